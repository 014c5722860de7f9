"""How a model is trained: which batches it learns from (`split:`), the Optuna search over its
parameters (`hpo:`, with the bound on trials one search may run) and where it trains
(`training:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.core.config_section import ConfigError, Section


class SplitConfig(Section):
    min_train_batches: int = Field(
        1, ge=1, description="Batches needed before the validation batch."
    )
    max_train_rows: int | None = Field(
        None, ge=1000, description="Keep only the newest rows for training (None keeps all)."
    )
    refit_on_holdout: bool = Field(
        True,
        description="After the challenger is judged on the holdout, refit it with the same "
        "parameters on every fit batch plus the holdout (rounds scaled to the rows) and register "
        "that refit: the served model has seen the newest labelled batch.",
    )


class IntRange(Section):
    low: int
    high: int
    log: bool = False


class FloatRange(Section):
    low: float
    high: float
    log: bool = False


def _default_search_space() -> dict[str, IntRange | FloatRange]:
    return {
        "max_depth": IntRange(low=3, high=10),
        "learning_rate": FloatRange(low=0.02, high=0.3, log=True),
        "min_child_weight": FloatRange(low=1.0, high=50.0, log=True),
        "subsample": FloatRange(low=0.5, high=1.0),
        "colsample_bytree": FloatRange(low=0.5, high=1.0),
        "reg_lambda": FloatRange(low=0.01, high=10.0, log=True),
    }


# Most Optuna trials one search may run: a parameter typed in the UI (an extra zero or three)
# would otherwise hold the worker, and the training of its dataset, for days.
MAX_TRIALS = 10_000


def checked_trials(trials: int | None) -> int | None:
    """A run's `trials` parameter (from the CLI, the UI or a deployment): None (the dataset's
    `hpo.trials`) or 1 to MAX_TRIALS; anything else is refused in one line."""
    if trials is None:
        return None
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(
            f"trials {str(trials)[:40]}: give 1 to {MAX_TRIALS:,} trials per search, or leave "
            "it empty for the dataset's hpo.trials"
        )
    return trials


class HpoConfig(Section):
    trials: int = Field(20, ge=1, le=MAX_TRIALS)
    timeout_s: float | None = Field(None, gt=0, description="Wall-time budget of one search.")
    # How the search runs, not what it finds: excluded from dumps, so from the fingerprint and the
    # study name, so that machines with different layouts join the same study.
    # One worker per core by default. On the flights job (40 trials, holdout 2013-12, the same
    # 6 study names in each layout: `benchmarks/search_layout.py`) two one-thread workers
    # searched in 15 s (median) where one two-thread worker took 38 s, for the same holdout AUC
    # (mean 0.7115 vs 0.7097): the AUC follows the draw of Hyperband brackets, not the layout.
    workers: int | None = Field(
        None, ge=1, exclude=True, description="Parallel search workers (default: cores)."
    )
    threads_per_worker: int | None = Field(
        None,
        ge=1,
        exclude=True,
        description="XGBoost threads per worker (default: cores // workers).",
    )
    first_worker_index: int = Field(
        0,
        ge=0,
        exclude=True,
        description="Sampler seed offset of this machine's first worker: give each machine that "
        "joins a shared study its own (0, then 2, 4, ... with 2 workers each).",
    )
    pruner: Literal["hyperband", "median", "none"] = "hyperband"
    seed: int = 42
    max_rounds: int = Field(400, ge=10, description="Boosting rounds at most per trial.")
    early_stopping_rounds: int = Field(30, ge=1)
    search_space: dict[str, IntRange | FloatRange] = Field(default_factory=_default_search_space)

    def trials_for(self, trials: int | None) -> int:
        """The trials one search runs: a run's `trials` parameter (checked, see
        `checked_trials`), or `hpo.trials` when it gives none. The search runs this many and a
        training run is identified by it, so both ask here."""
        return checked_trials(trials) or self.trials


class TrainingConfig(Section):
    """Where the model trains: in this process, or on a Dask cluster (`xgboost.dask`); on the
    CPU, or on an NVIDIA GPU (the search and the final fit alike)."""

    engine: Literal["local", "dask"] = "local"
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="XGBoost's device. cuda needs the CUDA build (`uv sync --extra gpu`) and a "
        "GPU: without either, training is refused (tasks/learn/device.py).",
    )
    dask_scheduler: str | None = Field(
        None,
        description="Scheduler address of a running Dask cluster (tcp://host:8786, or tls:// "
        "with the security in Dask's config); none: a LocalCluster on 127.0.0.1 for the run.",
    )
    dask_workers: int = Field(2, ge=1, description="Workers of the run's own LocalCluster.")
    dask_threads_per_worker: int | None = Field(
        None, ge=1, description="Threads of each LocalCluster worker (default: cores // workers)."
    )
