"""Train: the final XGBoost model on every batch before the holdout, with the search's best
parameters, as one scikit-learn pipeline (category encoding + classifier) so that the registry
holds everything needed to score raw rows.

The rows go to XGBoost once, as a float32 matrix binned into a `QuantileDMatrix` (no float64
frame, no second copy for the DMatrix): 10M rows train within 6 GB (`benchmarks/scale.py`).
`training.engine: dask` in the dataset YAML trains on a Dask cluster instead
(`tasks/distributed.py`); both give the same kind of pipeline."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PerennialConfig
from tasks.features import Datasets
from tasks.model import (
    as_classifier,
    assemble,
    encode,
    fit_encoder,
    matrix_spec,
    native_params,
)
from tasks.tune import TuneResult, cores


def fit_model(
    x: pd.DataFrame, y: pd.Series, params: dict[str, Any], rounds: int, config: PerennialConfig
) -> Any:
    """The pipeline trained on `x`, `y` with `params` for `rounds` rounds, on the engine the
    config names."""
    encoder = fit_encoder(config, x)
    columns = matrix_spec(encoder)
    threads = cores()
    if config.training.engine == "dask":
        from tasks.distributed import dask_client, train_on_dask

        with dask_client(config.training) as client:
            booster = train_on_dask(client, encode(encoder, x), y, columns, params, rounds, config)
    else:
        booster = train_local(encode(encoder, x), y, columns, params, rounds, config)
    return assemble(encoder, as_classifier(booster, params, rounds, threads, config.hpo.seed))


def train_local(
    matrix: Any,
    y: pd.Series,
    columns: dict[str, Any],
    params: dict[str, Any],
    rounds: int,
    config: PerennialConfig,
) -> Any:
    """A Booster trained in this process; `columns`: `matrix_spec` of the encoder."""
    import xgboost as xgb

    threads = cores()
    data = xgb.QuantileDMatrix(
        matrix,
        y.to_numpy(),
        **columns,
        nthread=threads,
    )
    del matrix  # binned now: the float32 rows can go as soon as the caller lets them
    return xgb.train(native_params(params, threads, config.hpo.seed), data, num_boost_round=rounds)


def top_features(model: Any, count: int = 10) -> list[tuple[str, float]]:
    """Gain importance of the fitted pipeline's classifier, highest first."""
    gains = model.named_steps["model"].get_booster().get_score(importance_type="gain")
    return sorted(gains.items(), key=lambda item: item[1], reverse=True)[:count]


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(data: Datasets, config: PerennialConfig, tuned: TuneResult) -> Any:
    return fit_model(data.x_fit, data.y_fit, tuned.best_params, tuned.best_rounds, config)
