"""Training on a Dask cluster (`training.engine: dask`): a real 2-worker LocalCluster of worker
processes on 127.0.0.1, real xgboost.dask; the result is the pipeline the registry stores."""

from __future__ import annotations

import logging

import psutil
import pytest
from sklearn.metrics import roc_auc_score

from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_training import TrainingConfig
from tasks.learn.distributed import dask_client, train_on_dask
from tasks.learn.model import fit_encoder, matrix_spec
from tasks.learn.scorer import Scorer
from tasks.learn.train import fit_model
from tests.conftest import FLIGHTS
from tests.unit.test_tune import synthetic_datasets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARAMS = {"max_depth": 4, "learning_rate": 0.2}
TWO_WORKERS = TrainingConfig(engine="dask", dask_workers=2, dask_threads_per_worker=1)
AUC_FLOOR = 0.75  # the synthetic label is learnable: local training scores about 0.8


@pytest.fixture(scope="module")
def config() -> PerennialConfig:
    base = load_config(FLIGHTS)
    return base.model_copy(update={"training": TWO_WORKERS})


def test_both_workers_train_one_model_that_scores_the_holdout(config: PerennialConfig) -> None:
    from distributed import get_task_stream

    data = synthetic_datasets(config, rows=4000, seed=1)
    encoder = fit_encoder(config, data.x_train)
    with dask_client(config.training) as client:
        workers = set(client.scheduler_info(n_workers=-1)["workers"])
        assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
        assert client.scheduler.address.startswith("tcp://127.0.0.1:")
        with get_task_stream(client) as stream:
            booster = train_on_dask(
                client,
                encoder.encode(data.x_train),
                data.y_train,
                matrix_spec(encoder),
                PARAMS,
                40,
                config,
            )
    # xgboost.dask submits one training call per worker holding rows (its `map_worker_partitions`
    # names the call after its inner function `fn`); the stream says where each one ran.
    keys = [(str(task["key"]), task["worker"]) for task in stream.data]
    trained_on = {worker for key, worker in keys if key.startswith("fn-")}
    assert trained_on == workers, keys  # each worker grew the trees on its share of the rows

    scores = Scorer(encoder, booster).score(data.x_holdout)
    assert roc_auc_score(data.y_holdout, scores) > AUC_FLOOR
    assert booster.num_boosted_rounds() == 40


def test_the_engine_in_the_config_trains_on_its_own_cluster_and_stops_it(
    config: PerennialConfig, caplog: pytest.LogCaptureFixture
) -> None:
    data = synthetic_datasets(config, rows=2000, seed=2)
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    caplog.set_level(logging.INFO, logger="distributed.scheduler")

    model = fit_model(data.x_train, data.y_train, PARAMS, 30, config)

    started = [r.getMessage() for r in caplog.records if "Scheduler at:" in r.getMessage()]
    assert len(started) == 1 and "tcp://127.0.0.1:" in started[0]  # its own, on loopback

    scores = model.score(data.x_holdout)
    assert roc_auc_score(data.y_holdout, scores) > AUC_FLOOR
    assert isinstance(model, Scorer)  # what the registry stores
    # multiprocessing's resource tracker, started with the first spawned worker, lives as long
    # as this process by design; the scheduler's and the workers' processes must be gone.
    left = [
        " ".join(child.cmdline())
        for child in psutil.Process().children(recursive=True)
        if child.pid not in before and child.is_running()
    ]
    assert not [cmd for cmd in left if "resource_tracker" not in cmd], left


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_the_dask_engine_trains_each_kind_of_target(task: str, tmp_path: object) -> None:
    from tests.unit.test_target_training import BAND, MINUTES, task_config, task_datasets

    path = MINUTES if task == "regression" else BAND
    config = task_config(path, tmp_path).model_copy(update={"training": TWO_WORKERS})  # type: ignore[arg-type]
    data = task_datasets(config, rows=2000)
    model = fit_model(data.x_train, data.y_train, PARAMS, 30, config)
    assert model.task == task
    labels = data.y_holdout.to_numpy()
    if task == "regression":
        values = model.predict(data.x_holdout)
        assert ((values - labels) ** 2).mean() ** 0.5 < 0.6 * labels.std()
    else:
        probabilities = model.predict_proba(data.x_holdout)
        assert probabilities.shape == (len(labels), 3)
        assert (probabilities.argmax(axis=1) == labels).mean() > 0.6
