"""Study: the Optuna study a search runs in. Its name (dataset, config fingerprint, data hash,
so a rerun finds it), its storage by one URL (a journal file, or a database shared across
processes and machines), its sampler and pruner, the trials that dead workers left RUNNING,
and what it shows a person: the trials table and the PNG figures.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from tasks.core.config import PerennialConfig
from tasks.core.config_training import HpoConfig
from tasks.core.processes import pid_alive
from tasks.core.run_logging import run_logger

FINISHED_STATES = ("COMPLETE", "PRUNED")
WORKER_ATTR = "worker"  # user attribute "host:pid:index" of the worker that ran a trial
SEED_ATTR = "sampler_seed"  # user attribute: the seed of the sampler that proposed a trial
# RDB storages record a heartbeat per running trial; a trial silent for the grace period is
# failed by any worker (the cross-machine case, where a dead process's PID cannot be checked).
HEARTBEAT_INTERVAL_S = 20
HEARTBEAT_GRACE_S = 120


def study_name(config: PerennialConfig, data_hash: str) -> str:
    return f"{config.dataset}-{config.fingerprint()}-{data_hash[:12]}"


def study_name_for_batches(config: PerennialConfig, batch_hashes: dict[str, str]) -> str:
    """The study of a training on these validated batches (batch id -> content hash). The one
    place the name is derived: `perennial train` and `perennial search` on the same batches and
    config meet in the same study, whatever machine each runs on."""
    from tasks.core.storage import content_hash

    return study_name(config, content_hash(json.dumps(batch_hashes, sort_keys=True).encode()))


def joining_config(config: PerennialConfig, first_worker_index: int | None) -> PerennialConfig:
    """The config with this machine's sampler seed offset (`hpo.first_worker_index`): a process
    joining a shared study needs its own, or its seeded sampler repeats another's points. The
    offset is excluded from the fingerprint, so the study name does not change."""
    if first_worker_index is None:
        return config
    hpo = config.hpo.model_copy(update={"first_worker_index": first_worker_index})
    return config.model_copy(update={"hpo": hpo})


def open_optuna_storage(url: str) -> Any:
    """`journal:/path` -> a journal file; any SQLAlchemy URL -> an RDB storage with heartbeats."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        from tasks.core.private_state import private_file

        path = url.removeprefix("journal:")
        private_file(Path(path))  # Optuna would create it with the umask's mode
        return optuna.storages.JournalStorage(JournalFileBackend(path))
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    # Two machines joining a new database at once both create Optuna's tables; PostgreSQL then
    # refuses the second's CREATE (duplicate type or table). The first one's tables are complete
    # once its transaction commits: opening again finds them.
    for attempt in range(3):
        try:
            with warnings.catch_warnings():  # heartbeats are marked experimental, and work
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, heartbeat_interval=HEARTBEAT_INTERVAL_S, grace_period=HEARTBEAT_GRACE_S
                )
        except (IntegrityError, ProgrammingError):
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def pruner_for(hpo: HpoConfig) -> Any:
    import optuna

    if hpo.pruner == "none":
        return optuna.pruners.NopPruner()
    if hpo.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=30)
    # Optuna's defaults, as the plain script uses them. `python benchmarks/pruners.py` (40 TPE
    # trials on holdouts 2013-06, -09, -12): every pruner's best trial reached the script's
    # holdout AUC within a second of the others, and this one ran the 40 trials in 13/72/52 s
    # against 35/131/161 s for the former default (min_resource=30) and 30/109/69 s for median.
    return optuna.pruners.HyperbandPruner()


def sampler_for(hpo: HpoConfig, worker_index: int, workers: int) -> Any:
    import optuna

    # The constant liar keeps parallel workers from sampling the same point; with one worker it
    # is off so that a seeded search repeats exactly.
    parallel = workers > 1 or hpo.first_worker_index > 0
    return optuna.samplers.TPESampler(seed=hpo.seed + worker_index, constant_liar=parallel)


class StudyDirectionError(ValueError):
    """An existing study optimises the other way from the config's primary metric."""


def study_direction(config: PerennialConfig) -> Literal["maximize", "minimize"]:
    """Optuna's direction for the config's primary metric: AUC up, log loss and errors down."""
    from tasks.core.metrics import metric

    return "maximize" if metric(config.primary_metric).higher_is_better else "minimize"


def create_study(config: PerennialConfig, name: str, storage: Any | None = None) -> Any:
    """Create or load the study `name` (on `storage`, else on the config's storage URL). A study
    found with the other direction is refused: its trials' values are another metric's, and
    resuming it would pick the worst trial as the best (the study name carries the config's
    fingerprint, so only a name given by hand can meet one)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = study_direction(config)
    study = optuna.create_study(
        study_name=name,
        storage=storage or open_optuna_storage(config.optuna_storage_url),
        load_if_exists=True,
        direction=direction,
        sampler=sampler_for(config.hpo, 0, 1),
        pruner=pruner_for(config.hpo),
    )
    found = study.direction.name.lower()
    if found != direction:
        raise StudyDirectionError(
            f"study {name} exists and is set to {found}, but primary_metric "
            f"{config.primary_metric} needs {direction}: give the search another study name"
        )
    return study


def fail_stale_trials(study: Any, storage: Any) -> int:
    """Fail the RUNNING trials whose worker is gone, so that they neither block nor count.

    `storage` is the storage the study was opened on. On this host a trial's worker is known
    dead when its PID is (or is this process, which runs no trial yet). A journal file is one
    host's, so its trials that died before recording their worker are stale too. Other hosts'
    trials on an RDB storage go by heartbeat. Only Optuna's public API is used: `study.tell`
    accepts a trial number and any RUNNING trial, whichever process started it."""
    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():  # experimental since Optuna 2.9, stable in use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # heartbeat-based; a no-op on a journal
    host = socket.gethostname()
    journal = isinstance(storage, optuna.storages.JournalStorage)
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER_ATTR, ""))
        owner_host, _, pid = owner.rpartition(":")
        stale = (owner_host == host and not _alive(int(pid))) if owner else journal
        if stale:
            try:
                study.tell(trial.number, state=TrialState.FAIL)
                failed += 1
            except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
                pass  # finished meanwhile
    return failed


def _alive(pid: int) -> bool:
    return pid != os.getpid() and pid_alive(pid)


def trials_table(study: Any) -> list[dict[str, Any]]:
    rows = []
    for trial in study.trials:
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "value": trial.value,
                "rounds": trial.user_attrs.get("best_rounds"),
                "seconds": round(trial.duration.total_seconds(), 2) if trial.duration else None,
                **trial.params,
            }
        )
    return rows


def render_study_figures(storage_url: str, name: str, folder: Path) -> dict[str, Path]:
    """Optimisation history and parameter importance of a study as PNGs in `folder`.

    Importance needs at least two completed trials; with fewer only the history is drawn."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI, workers, servers
    import matplotlib.pyplot as plt
    import optuna
    from optuna.importance import FanovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    study = optuna.load_study(study_name=name, storage=open_optuna_storage(storage_url))
    folder.mkdir(parents=True, exist_ok=True)
    drawers: dict[str, Callable[[], Any]] = {
        "optuna_history.png": lambda: plots.plot_optimization_history(study)
    }
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) >= 2:
        drawers["optuna_importance.png"] = lambda: plots.plot_param_importances(
            study, evaluator=FanovaImportanceEvaluator(seed=0)
        )
    paths = {}
    for file_name, draw in drawers.items():
        with warnings.catch_warnings():  # the matplotlib plots are marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                axes = draw()
            except RuntimeError as error:  # fANOVA: "zero total variance" when trials tie
                run_logger("perennial.tune").warning("no %s: %s", file_name, error)
                continue
        figure = axes.get_figure()
        figure.set_size_inches(8, 5)
        figure.tight_layout()
        paths[file_name] = folder / file_name
        figure.savefig(paths[file_name], dpi=100)
        plt.close(figure)
    return paths
