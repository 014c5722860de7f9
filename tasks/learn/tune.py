"""Tune: an Optuna search over XGBoost parameters: parallel, pruned, seeded and resumable.

One study per training run (`tasks/learn/study.py`: its name, its storage by one URL, stale trials).
Rerunning the same training finds the study, fails the trials that a killed run left RUNNING,
and runs only the trials still missing.

Parallelism: `hpo.workers` search workers (default: one per core) run in threads of one process,
each with its own sampler (seed + worker index) and `cores // workers` XGBoost threads. Threads
beat processes here: XGBoost releases the GIL while it trains, and threads share the prepared
matrices and skip the spawn + import cost of a process (6 unpruned trials on 2 cores: 5.1 s in
two threads, 13.1 s in two spawned processes, 28.4 s in Prefect's process pool). More machines
join a search by running the same training against the same PostgreSQL storage URL.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.artifacts import artifact_key
from tasks.core.config import PerennialConfig
from tasks.core.config_training import FloatRange, HpoConfig
from tasks.core.run_logging import PROGRESS, run_logger
from tasks.data.features import Datasets
from tasks.learn.device import training_device, xgboost_module
from tasks.learn.model import fit_encoder, matrix_spec, search_metric, task_objective
from tasks.learn.study import (
    FINISHED_STATES,
    SEED_ATTR,
    WORKER_ATTR,
    create_study,
    fail_stale_trials,
    open_optuna_storage,
    pruner_for,
    sampler_for,
    trials_table,
)


@dataclass
class TuneResult:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    best_trial: int
    best_rounds: int
    trials_run: int  # in this call; the study may hold more from earlier runs
    trials_total: int
    trials_pruned: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    workers: int = 1
    threads_per_worker: int = 1
    stale_failed: int = 0  # RUNNING trials of a killed run, failed before resuming


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def worker_layout(hpo: HpoConfig, trials_left: int) -> tuple[int, int]:
    """(workers, XGBoost threads per worker) so that workers x threads = cores."""
    workers = max(1, min(hpo.workers or cores(), trials_left))
    threads = hpo.threads_per_worker or max(1, cores() // workers)
    return workers, threads


def suggest_params(trial: Any, hpo: HpoConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, bounds in hpo.search_space.items():
        if isinstance(bounds, FloatRange):
            params[name] = trial.suggest_float(name, bounds.low, bounds.high, log=bounds.log)
        else:
            params[name] = trial.suggest_int(name, bounds.low, bounds.high, log=bounds.log)
    return params


def typed_warm_start(params: dict[str, Any], hpo: HpoConfig) -> dict[str, Any] | None:
    """The champion's parameters as the search space's types (MLflow returns them as strings,
    e.g. "6" or "0.05"), or None when one is missing, unreadable or outside the search space
    (then no warm start: Optuna would run an enqueued point outside its space, and the space
    is the user's constraint)."""
    typed: dict[str, Any] = {}
    for name, bounds in hpo.search_space.items():
        if name not in params:
            return None
        try:
            value = float(params[name])
        except (TypeError, ValueError):
            return None
        if not bounds.low <= value <= bounds.high:
            return None
        typed[name] = value if isinstance(bounds, FloatRange) else round(value)
    return typed


def make_objective(data: Datasets, config: PerennialConfig, threads: int) -> Any:
    """Objective: the validation value of the primary metric's XGBoost counterpart
    (`search_metric`: auc, mlogloss, rmse...) of XGBoost fit on the train batches with the
    task's objective, pruned per round; the study's direction follows the metric's.

    The matrices are built once per worker, not once per trial: the native API trains on a
    prepared QuantileDMatrix, which saves the quantile sketch that `XGBClassifier.fit` redoes
    on every call. Parameter names are the scikit-learn ones (XGBoost accepts them as aliases),
    so the best parameters feed `native_params` and `xgb_classifier` unchanged."""
    xgb = xgboost_module()
    device = training_device(config)  # refused here, in one line, before any trial starts

    # The submodule, not the package's lazy attribute: that one fails when threads race for it.
    from optuna_integration.xgboost import XGBoostPruningCallback

    hpo = config.hpo
    encoder = fit_encoder(config, data.x_train)
    columns = matrix_spec(encoder)
    train = xgb.QuantileDMatrix(
        encoder.encode(data.x_train),
        data.y_train.to_numpy(),
        **columns,
        nthread=threads,
    )
    valid = xgb.QuantileDMatrix(
        encoder.encode(data.x_valid),
        data.y_valid.to_numpy(),
        **columns,
        ref=train,
        nthread=threads,
    )
    watched = search_metric(config)
    fixed = {
        **task_objective(config),
        "eval_metric": watched,
        "tree_method": "hist",
        "device": device,
        "nthread": threads,
        "seed": hpo.seed,
    }
    owner = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: Any) -> float:
        trial.set_user_attr(WORKER_ATTR, owner)
        params = suggest_params(trial, hpo)
        booster = xgb.train(
            {**fixed, **params},
            train,
            num_boost_round=hpo.max_rounds,
            evals=[(valid, "validation")],
            early_stopping_rounds=hpo.early_stopping_rounds,
            callbacks=[XGBoostPruningCallback(trial, f"validation-{watched}")],
            verbose_eval=False,
        )
        trial.set_user_attr("best_rounds", int(booster.best_iteration) + 1)
        return float(booster.best_score)

    return objective


def search_worker(
    data: Datasets,
    config: PerennialConfig,
    name: str,
    worker_index: int,
    workers: int,
    threads: int,
    target: int,
    deadline: float | None,
    on_trial: Callable[[Any, Any], None] | None = None,
) -> int:
    """One worker: run trials until the study holds `target` finished or running trials, or
    the deadline (a `time.time()`) passes. Returns the number of trials it ran."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    hpo = config.hpo
    study = optuna.load_study(
        study_name=name,
        storage=open_optuna_storage(config.optuna_storage_url),
        sampler=sampler_for(hpo, worker_index, workers),
        pruner=pruner_for(hpo),
    )
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    left = target - len(study.get_trials(deepcopy=False, states=states))
    timeout = None if deadline is None else deadline - time.time()
    if left <= 0 or (timeout is not None and timeout <= 0):
        return 0
    ran = 0

    def count(study: Any, trial: Any) -> None:
        nonlocal ran
        ran += 1
        if on_trial:
            on_trial(study, trial)

    # Counting RUNNING trials too stops a worker as soon as the others' trials fill the budget.
    stop = MaxTrialsCallback(target, states=states)
    objective = make_objective(data, config, threads)
    seed = hpo.seed + worker_index  # sampler_for's: a shared study shows who sampled each trial

    def seeded_objective(trial: Any) -> float:
        trial.set_user_attr(SEED_ATTR, seed)
        return float(objective(trial))

    if deadline is not None:
        timeout = max(0.001, deadline - time.time())  # building the matrices took some of it
    study.optimize(seeded_objective, n_trials=left, timeout=timeout, callbacks=[count, stop])
    return ran


WorkerRunner = Callable[[list[dict[str, Any]]], list[int]]


def run_in_threads(calls: list[dict[str, Any]]) -> list[int]:
    """Run `search_worker` calls in threads of this process (outside Prefect)."""
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix="search") as pool:
        futures = [pool.submit(search_worker, **call) for call in calls]
        return [future.result() for future in futures]


def tune(
    data: Datasets,
    config: PerennialConfig,
    name: str,
    warm_start: dict[str, Any] | None = None,
    trials: int | None = None,
    runner: WorkerRunner = run_in_threads,
) -> TuneResult:
    """Run (or resume) the study until it holds `trials` finished trials or the timeout ends it."""
    hpo = config.hpo
    # Checked here too: the training flow hands its run parameter straight to this task.
    target = hpo.trials_for(trials)
    deadline = time.time() + hpo.timeout_s if hpo.timeout_s else None
    storage = open_optuna_storage(config.optuna_storage_url)
    study = create_study(config, name, storage)
    stale = fail_stale_trials(study, storage)
    if warm_start and not study.trials:
        typed = typed_warm_start(warm_start, hpo)
        if typed is not None:
            study.enqueue_trial(typed, skip_if_exists=True)
    finished = [t for t in study.trials if t.state.name in FINISHED_STATES]
    remaining = max(0, target - len(finished))
    workers, threads = worker_layout(hpo, remaining)
    logger = run_logger("perennial.tune")
    if remaining:
        logger.info(
            "study %s: %d finished trial(s) found (%d stale failed), running %d with %d "
            "worker(s) x %d XGBoost thread(s)",
            *(name, len(finished), stale, remaining, workers, threads),
        )
        report = _progress_reporter(logger, target)
        calls = [
            dict(
                data=data,
                config=config,
                name=name,
                worker_index=hpo.first_worker_index + index,
                workers=workers,
                threads=threads,
                target=target,
                deadline=deadline,
                on_trial=report,
            )
            for index in range(workers)
        ]
        ran = sum(runner(calls))
    else:
        ran = 0
    return summarise(study, name, ran, workers, threads, stale)


def _progress_reporter(logger: Any, target: int) -> Callable[[Any, Any], None]:
    def report(study: Any, trial: Any) -> None:
        logger.info(
            "trial %d/%d %s value=%s",
            trial.number + 1,
            target,
            trial.state.name.lower(),
            f"{trial.value:.4f}" if trial.value is not None else "-",
            extra=PROGRESS,
        )

    return report


def summarise(
    study: Any, name: str, ran: int, workers: int, threads: int, stale: int
) -> TuneResult:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(
            f"study {name}: no trial completed (budget too small, or every trial pruned or "
            "failed); raise hpo.trials or hpo.timeout_s in the dataset YAML"
        )
    best = study.best_trial
    return TuneResult(
        study_name=name,
        best_params=dict(best.params),
        best_value=float(best.value or 0.0),  # the best trial is complete: value set
        best_trial=best.number,
        best_rounds=int(best.user_attrs["best_rounds"]),
        trials_run=ran,
        trials_total=sum(t.state.name in FINISHED_STATES for t in study.trials),
        trials_pruned=sum(t.state.name == "PRUNED" for t in study.trials),
        trials=trials_table(study),
        workers=workers,
        threads_per_worker=threads,
        stale_failed=stale,
    )


def prefect_runner(calls: list[dict[str, Any]]) -> list[int]:
    """Run the workers as Prefect tasks (threads), so each shows in the UI with its logs."""
    from prefect.task_runners import ThreadPoolTaskRunner

    runner: Any
    with ThreadPoolTaskRunner(max_workers=len(calls)) as runner:
        futures = [runner.submit(search_worker_task, call) for call in calls]
        return [int(future.result()) for future in futures]


search_worker_task = task(name="search-worker", cache_policy=NO_CACHE)(search_worker)


def publish_trials_table(config: PerennialConfig, result: TuneResult) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        table=result.trials,
        key=artifact_key(f"{config.dataset}-hpo-trials"),
        description=f"study {result.study_name}: best #{result.best_trial} "
        f"value {result.best_value:.4f}",
    )


@task(name="tune-hyperparameters", cache_policy=NO_CACHE)
def tune_task(
    data: Datasets,
    config: PerennialConfig,
    name: str,
    warm_start: dict[str, Any] | None = None,
    trials: int | None = None,
) -> TuneResult:
    result = tune(data, config, name, warm_start, trials, runner=prefect_runner)
    publish_trials_table(config, result)
    return result
