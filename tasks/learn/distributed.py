"""Distributed training: the final XGBoost model on a Dask cluster with `xgboost.dask`.

Chosen in the dataset YAML (`training: {engine: dask, dask_scheduler: ..., dask_workers: 2}`).
No scheduler address: a LocalCluster of worker processes on 127.0.0.1 is started for the run
and stopped after it (no dashboard, nothing listening beyond loopback). An address: the run
connects to that cluster as a client and leaves it running; the security of the connection
(`tls://` and certificates) comes from Dask's own config (`DASK_DISTRIBUTED__COMM__TLS__*`), so
no secret is in the YAML or argv.

The rows are encoded here, as for local training, split into one partition per worker and
scattered to the workers; each worker bins its share into a `DaskQuantileDMatrix` and
`xgboost.dask.train` grows the trees together (XGBoost's own collective, a tracker on the
scheduler). The result is an ordinary Booster: the registry, scoring and promotion are
unchanged. The search's trials stay local threads (`tasks/learn/tune.py`): a trial is seconds of
work, less than a distributed dispatch costs, and more machines already join a search through
the shared Optuna storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.core.config_training import TrainingConfig
from tasks.learn.device import training_device, xgboost_module
from tasks.learn.model import native_params, task_objective


def _local_threads(training: TrainingConfig) -> int:
    from tasks.learn.tune import cores

    return training.dask_threads_per_worker or max(1, cores() // training.dask_workers)


@contextmanager
def dask_client(training: TrainingConfig) -> Iterator[Any]:
    """A client of the configured cluster; a LocalCluster started and stopped here when the
    config names no scheduler."""
    from distributed import Client, LocalCluster

    if training.dask_scheduler:
        with Client(training.dask_scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=training.dask_workers,
            threads_per_worker=_local_threads(training),
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            scheduler_port=0,  # a free port: runs side by side never collide
        ) as cluster,
        # The default client while it lives: xgboost.dask looks the default up even when given one.
        Client(cluster) as client,
    ):
        yield client


def scatter_rows(client: Any, matrix: np.ndarray, labels: np.ndarray) -> tuple[Any, Any]:
    """The rows as dask arrays of one partition per worker, each partition already held by one
    worker (scattered round-robin), so every worker trains on a share."""
    import dask.array as da

    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    bounds = np.linspace(0, len(matrix), len(workers) + 1).astype(int)
    x_parts, y_parts = [], []
    for index, worker in enumerate(workers):
        start, stop = bounds[index], bounds[index + 1]
        if stop == start:
            continue
        x_future, y_future = client.scatter(
            [matrix[start:stop], labels[start:stop]], workers=[worker], direct=True
        )
        x_parts.append(da.from_delayed(x_future, (stop - start, matrix.shape[1]), matrix.dtype))
        y_parts.append(da.from_delayed(y_future, (stop - start,), labels.dtype))
    return da.concatenate(x_parts), da.concatenate(y_parts)


def train_on_dask(
    client: Any,
    matrix: np.ndarray,
    y: pd.Series,
    columns: dict[str, Any],
    params: dict[str, Any],
    rounds: int,
    config: PerennialConfig,
) -> Any:
    """A Booster trained with `xgboost.dask.train` on the client's cluster."""
    xgboost_module()  # one line naming the extra, when XGBoost is not installed
    from xgboost import dask as dxgb

    x_parts, y_parts = scatter_rows(client, matrix, y.to_numpy())
    del matrix  # on the workers now
    data = dxgb.DaskQuantileDMatrix(client, x_parts, y_parts, **columns)
    # nthread: each worker uses its own threads (xgboost.dask sets it per worker).
    fixed = native_params(
        params, 0, config.hpo.seed, training_device(config), task_objective(config)
    )
    fixed.pop("nthread")
    output = dxgb.train(client, fixed, data, num_boost_round=rounds)
    return output["booster"]
