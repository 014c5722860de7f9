"""What the search layout costs in model quality: holdout AUC and search time of Perennial's own
search with two one-thread workers (the default on 2 cores) against one worker with every
thread (as the plain script searches), over several study names.

Hyperband assigns each trial to a bracket by a hash of the study name and the trial number, so
one name is one draw of the brackets: the search path, and with it the AUC of the model found,
changes with the name (the plain script's study is unnamed, so Optuna names it at random and its
AUC varies from run to run). Both layouts run on the same names, in alternating order.

The job is `perennial train --batches 2013-01..2013-12 --trials 40` with
PERENNIAL_SPLIT__MAX_TRAIN_ROWS=400000, outside Prefect: the months are landed and gated into a
temporary home with Perennial's own functions, then for each name and layout `tasks.learn.tune.tune`
runs 40 trials and `tasks.learn.train.fit_model` fits the final model, scored on 2013-12.

Writes benchmarks/results/search_layout.json (nothing else writes it):

    .venv/bin/python benchmarks/search_layout.py [--names 6] [--trials 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "search_layout.json"
MONTHS = [f"2013-{month:02d}" for month in range(1, 13)]
LAYOUTS = {"two_workers": None, "one_worker": 1}  # hpo.workers (None: one per core)


def landed_datasets(home: Path, months: list[str] = MONTHS) -> tuple[Any, Any]:
    """The flights config on `home` and its datasets, `months` landed and gated there (the last
    one is the holdout)."""
    os.environ.update(
        PERENNIAL_HOME=str(home),
        PERENNIAL_SPLIT__MAX_TRAIN_ROWS="400000",
        PERENNIAL_VALIDATION__DATA_DOCS="false",
    )
    from tasks.core.config import dataset_config
    from tasks.core.storage import open_storage
    from tasks.data.features import build_datasets
    from tasks.data.ingest import land_from
    from tasks.data.validate import gate_batch

    config = dataset_config("flights")
    storage = open_storage(config.home)
    for month in months:
        land_from(config, month, None)
        assert gate_batch(storage, config, month).passed, f"{month} failed the gate"
    return config, build_datasets(storage, config, months)


def with_workers(config: Any, workers: int | None) -> Any:
    return config.model_copy(update={"hpo": config.hpo.model_copy(update={"workers": workers})})


def search_once(config: Any, data: Any, name: str, trials: int) -> dict[str, Any]:
    """Search `trials` on study `name`, fit the final model, score it on the holdout."""
    from sklearn.metrics import roc_auc_score

    from tasks.learn.train import fit_model
    from tasks.learn.tune import tune

    load_at_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()
    result = tune(data, config, name, trials=trials)
    search_s = time.perf_counter() - started
    model = fit_model(data.x_fit, data.y_fit, result.best_params, result.best_rounds, config)
    auc = roc_auc_score(data.y_holdout, model.predict_proba(data.x_holdout)[:, 1])
    return {
        "study": name,
        "search_s": round(search_s, 1),
        "holdout_auc": round(float(auc), 4),
        "best_rounds": result.best_rounds,
        "trials_pruned": result.trials_pruned,
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def paired_runs(
    arms: dict[str, tuple[Any, Any]], prefix: str, names: int, trials: int
) -> dict[str, list[dict[str, Any]]]:
    """Run each arm (config, datasets) on the same study names `prefix-0`, `prefix-1`, ...
    (one name = one draw of brackets for every arm), the order alternating from name to name;
    each study is deleted after its run. The arms share one Optuna storage."""
    import optuna

    from tasks.learn.study import open_optuna_storage

    storage = open_optuna_storage(next(iter(arms.values()))[0].optuna_storage_url)
    runs: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for index in range(names):
        name = f"{prefix}-{index}"
        for arm in list(arms) if index % 2 == 0 else list(reversed(arms)):
            config, data = arms[arm]
            run = search_once(config, data, name, trials)
            runs[arm].append(run)
            print(arm, json.dumps(run), flush=True)
            optuna.delete_study(study_name=name, storage=storage)
    return runs


def spread(runs: list[dict[str, Any]], key: str) -> dict[str, float]:
    values = [run[key] for run in runs]
    return {
        "mean": round(statistics.fmean(values), 4),
        "median": round(statistics.median(values), 4),
        "min": min(values),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=6, help="study names (draws of brackets)")
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    started = datetime.now(UTC)
    load_at_start = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="perennial-bench-layout-") as folder:
        config, data = landed_datasets(Path(folder))
        arms = {layout: (with_workers(config, n), data) for layout, n in LAYOUTS.items()}
        runs = paired_runs(arms, "layout", args.names, args.trials)
    result = {
        "what": "holdout AUC (2013-12) and search time of Perennial's search, 40 trials, "
        "two one-thread workers vs one worker with every thread, on the same study names",
        "trials": args.trials,
        "names": args.names,
        "auc": {layout: spread(rows, "holdout_auc") for layout, rows in runs.items()},
        "search_s": {layout: spread(rows, "search_s") for layout, rows in runs.items()},
        "runs": runs,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": started.isoformat(timespec="seconds"),
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("auc", "search_s")}, indent=2))


if __name__ == "__main__":
    main()
