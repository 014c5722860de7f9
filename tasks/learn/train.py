"""Train: the final XGBoost model on every batch before the holdout, with the search's best
parameters, as one `Scorer` (the encoder's state + the booster) so that the registry holds
everything needed to score raw rows. Once judged on the holdout, the same recipe is refit
on the holdout too (`split.refit_on_holdout`): that refit is what a run registers and serves.

The rows go to XGBoost once, as a float32 matrix binned into a `QuantileDMatrix` (no float64
frame, no second copy for the DMatrix): 10M rows train within 6 GB (`benchmarks/scale.py`).
`training.engine: dask` in the dataset YAML trains on a Dask cluster instead
(`tasks/learn/distributed.py`); both give the same kind of model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.data.features import Datasets
from tasks.learn.device import training_device, xgboost_module
from tasks.learn.model import fit_encoder, matrix_spec, native_params, task_objective
from tasks.learn.scorer import Scorer, label_classes
from tasks.learn.tune import TuneResult, cores


def fit_model(
    x: pd.DataFrame,
    y: pd.Series,
    params: dict[str, Any],
    rounds: int,
    config: PerennialConfig,
    threads: int | None = None,
) -> Scorer:
    """The model trained on `x`, `y` with `params` for `rounds` rounds, on the engine and
    device the config names; `threads`: XGBoost's threads in this process (default: every core;
    a replay, which fits dozens of models in turn, gives one)."""
    encoder = fit_encoder(config, x)
    columns = matrix_spec(encoder)
    threads = threads or cores()
    if config.training.engine == "dask":
        from tasks.learn.distributed import dask_client, train_on_dask

        with dask_client(config.training) as client:
            booster = train_on_dask(client, encoder.encode(x), y, columns, params, rounds, config)
    else:
        booster = train_local(encoder.encode(x), y, columns, params, rounds, config, threads)
    # The registered booster predicts on the CPU, wherever it was trained.
    booster.set_param({"device": "cpu"})
    if config.target.task == "multiclass":
        label_classes(booster, config.target.classes or [])
    return Scorer(encoder, booster)


def train_local(
    matrix: Any,
    y: pd.Series,
    columns: dict[str, Any],
    params: dict[str, Any],
    rounds: int,
    config: PerennialConfig,
    threads: int,
) -> Any:
    """A Booster trained in this process on `threads` threads; `columns`: `matrix_spec` of the
    encoder."""
    xgb = xgboost_module()
    data = xgb.QuantileDMatrix(
        matrix,
        y.to_numpy(),
        **columns,
        nthread=threads,
    )
    del matrix  # binned now: the float32 rows can go as soon as the caller lets them
    fixed = native_params(
        params, threads, config.hpo.seed, training_device(config), task_objective(config)
    )
    return xgb.train(fixed, data, num_boost_round=rounds)


def refit_rounds(rounds: int, judged_rows: int, refit_rows: int) -> int:
    """Boosting rounds of a refit on more rows than the judged model saw: scaled with the rows
    (the search chose the rounds for the judged model's rows, and more rows bear more rounds
    before they overfit), never fewer."""
    return max(rounds, round(rounds * refit_rows / max(judged_rows, 1)))


@dataclass(frozen=True)
class ServedModel:
    """The model a run registers (and serves once promoted), and what it saw: with
    `split.refit_on_holdout` the judged model refit on the holdout too, else the judged model."""

    model: Scorer
    trained_on: list[str]  # batches whose rows it was trained on
    judged_on: str  # the holdout that judged its recipe, trained without it
    rounds: int
    rows: int
    refit: bool


def serve_model(
    model: Scorer, data: Datasets, config: PerennialConfig, tuned: TuneResult
) -> ServedModel:
    """What a run registers. The judged `model` saw every batch before the holdout; on drifting
    data the month it never saw is the costliest gap of all (about 0.019 realized AUC a month on
    the demo year: benchmarks/results/replay.json), so by default the same recipe (parameters,
    rounds scaled to the rows) is refit on the holdout's rows as well."""
    split = data.split
    if not config.split.refit_on_holdout:
        rows = len(data.y_fit)
        return ServedModel(model, split.fit_batches, split.holdout, tuned.best_rounds, rows, False)
    x = pd.concat([data.x_fit, data.x_holdout], ignore_index=True)
    y = pd.concat([data.y_fit, data.y_holdout], ignore_index=True)
    rounds = refit_rounds(tuned.best_rounds, len(data.y_fit), len(y))
    refit = fit_model(x, y, tuned.best_params, rounds, config)
    trained_on = [*split.fit_batches, split.holdout]
    return ServedModel(refit, trained_on, split.holdout, rounds, len(y), True)


def top_features(model: Scorer, count: int = 10) -> list[tuple[str, float]]:
    """Gain importance of the fitted model's booster, highest first."""
    gains = model.booster.get_score(importance_type="gain")
    return sorted(gains.items(), key=lambda item: item[1], reverse=True)[:count]


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(data: Datasets, config: PerennialConfig, tuned: TuneResult) -> Scorer:
    return fit_model(data.x_fit, data.y_fit, tuned.best_params, tuned.best_rounds, config)


@task(name="refit-on-holdout", cache_policy=NO_CACHE)
def serve_model_task(
    model: Scorer, data: Datasets, config: PerennialConfig, tuned: TuneResult
) -> ServedModel:
    served = serve_model(model, data, config, tuned)
    if served.refit:
        from tasks.core.run_logging import run_logger

        run_logger().info(
            "refit on %s..%s (%d rows, %d rounds): the served model has seen holdout %s",
            served.trained_on[0],
            served.trained_on[-1],
            served.rows,
            served.rounds,
            served.judged_on,
        )
    return served
