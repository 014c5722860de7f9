"""The whole training job: `perennial train` against the same job as one plain script.

Runs, alternating (the order flips every pair, so a drift in the machine's load hits both), N
pairs of:
- `perennial train --batches 2013-01..2013-12 --trials 40 --json` with
  PERENNIAL_SPLIT__MAX_TRAIN_ROWS=400000, the script's features (PERENNIAL_FEATURES__NUMERIC,
  see SCRIPT_NUMERIC) and its search (SCRIPT_HPO: 400 rounds at most, early stopping after 30,
  its search space; the demo config stops at 300 and 25) from a fresh PERENNIAL_HOME (the data
  is landed and gated inside the run, as on a first training). Prefect: the shared local
  server, as a user who has run any Perennial command in the last hour has it. It is started
  once, before the pairs, in the benchmark's own PREFECT_HOME (`perennial server start`), and
  that start is timed and written apart (`server_start_s`): the first command on a machine pays
  it once; `first_command_ratio` adds it to the median Perennial wall time;
- `python ../shared/anchors/bare_pipeline.py 12 40` (the anchor, referenced where it lives: it is
  not part of this repository).
Holdout AUC varies with the draw of the search, by about 0.01 from one draw to the next: the
TPE seed and the Hyperband brackets (a hash of the study name: the script's is random, Perennial's
fixed by its config, seed included, and data). One seed compares two draws, not two pipelines:
pair i gives both the seed FIRST_SEED + i (Perennial by PERENNIAL_HPO__SEED; the script, which
hard-codes TPESampler(seed=42), through SEEDED_ANCHOR, which runs it unchanged with only the
seed replaced; pair 0 is seed 42, the script as written). The result gives both AUCs' means and
the mean of the paired differences (Perennial - script) with its 95% t interval.
Each is one child process of this one, started and waited for here; its peak resident memory is
the peak of the summed RSS of its whole process tree (sampled from /proc every 0.1 s). Both
holdout AUCs are recorded, and Perennial's time per stage from its run's MLflow cost metrics
(`cost_<stage>_wall_seconds`, tasks/registry/cost.py); the rest of its wall time (interpreter,
imports,
Prefect server start, MLflow set-up) is `outside_stages_s`.

The regression row (`--task regression`, or `both`) is the same measurement for the arrival
delay in minutes: `perennial train --config configs/flights_delay_minutes.yaml` with the same
features, search and seeds against `python ../shared/anchors/bare_regression.py 12 40` (XGBoost
squared error, Optuna on validation RMSE, holdout December). It is written under `regression`:
both holdout RMSEs, the script's naive baseline (the training months' mean delay), the script's
mean RMSE with its 95% t interval over seeds, whether Perennial's mean RMSE is within it or
better (lower), the paired differences and the time ratio as for the binary job. A run of one
task keeps the other's figures in the file.

Writes benchmarks/results/pipeline.json with the 1-minute load average around each run.

    .venv/bin/python benchmarks/pipeline.py [--pairs 12] [--trials 40] [--task both]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline_jobs import (  # noqa: E402
    BATCHES,
    JOBS,
    MAX_TRAIN_ROWS,
    RUNS,
    SCRIPT_HPO,
    SCRIPT_NUMERIC,
    auc_difference,
    regression_row,
)

RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
ANCHORS = Path("..") / "shared" / "anchors"  # relative to the repository
ANCHOR_PATH = ANCHORS / "bare_pipeline.py"
FIRST_SEED = 42  # the script's own
# Runs the anchor as `python -c SEEDED_ANCHOR SEED ANCHOR ARGS...`: the anchor's TPESampler(seed=42)
# gets SEED; nothing else of it changes.
SEEDED_ANCHOR = """import runpy, sys, optuna
seed, tpe = int(sys.argv.pop(1)), optuna.samplers.TPESampler
optuna.samplers.TPESampler = lambda **options: tpe(**{**options, "seed": seed})
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
STAGES = ("gate", "features", "tune", "train", "evaluate", "refit", "register")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def tree_rss_kb(root: int) -> int:
    """Summed RSS of `root` and all its descendants (processes that vanish are skipped)."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
            for thread in Path(f"/proc/{pid}/task").iterdir():
                pending += [int(c) for c in (thread / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


def run_measured(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run `command` as a child; its wall time, peak tree RSS, output and load averages."""
    load_at_start = round(os.getloadavg()[0], 2)
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.1):
            peak = max(peak, tree_rss_kb(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command[:3])} failed ({process.returncode}): {err[-1500:]}")
    return {
        "wall_s": round(wall, 1),
        "peak_rss_gb": round(peak / 1024**2, 3),
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "stdout": out,
    }


def stage_seconds(home: Path, model: str, version: str) -> dict[str, float]:
    """Wall seconds of each stage, from the registered run's cost metrics."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    run_id = client.get_model_version(model, version).run_id
    metrics = client.get_run(run_id).data.metrics
    return {s: round(metrics[f"cost_{s}_wall_seconds"], 1) for s in STAGES}


PERENNIAL = str(Path(sys.executable).parent / "perennial")


def prefect_env(prefect_home: Path) -> dict[str, str]:
    """The benchmark's own Prefect home (never the user's), no API URL of the caller's."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PERENNIAL_PREFECT")}
    return {**env, "PREFECT_HOME": str(prefect_home), "MLFLOW_DISABLE_TELEMETRY": "true"}


def server(action: str, prefect_home: Path) -> float:
    """`perennial server start|stop` in the benchmark's Prefect home; seconds it took (a start
    returns once the API answers)."""
    start = time.perf_counter()
    subprocess.run(
        [PERENNIAL, "server", action],
        cwd=ROOT,
        env=prefect_env(prefect_home),
        capture_output=True,
        check=action == "start",
    )
    return round(time.perf_counter() - start, 1)


def perennial_run(
    trials: int, seed: int, prefect_home: Path, task: str = "binary"
) -> dict[str, Any]:
    # Each run's home is removed once measured (it holds a whole pipeline's state).
    with tempfile.TemporaryDirectory(prefix="perennial-bench-pipeline-") as folder:
        return measured_train(Path(folder), trials, seed, prefect_home, task)


def measured_train(
    home: Path, trials: int, seed: int, prefect_home: Path, task: str
) -> dict[str, Any]:
    env = {
        **prefect_env(prefect_home),
        "PERENNIAL_HOME": str(home),
        "PERENNIAL_SPLIT__MAX_TRAIN_ROWS": MAX_TRAIN_ROWS,
        "PERENNIAL_FEATURES__NUMERIC": json.dumps(SCRIPT_NUMERIC),
        **SCRIPT_HPO,
        "PERENNIAL_HPO__SEED": str(seed),
    }
    command = [PERENNIAL, "train", "--batches", BATCHES, "--trials", str(trials), "--json"]
    job = JOBS[task]
    if job["config"]:
        command += ["--config", str(ROOT / job["config"])]
    run = run_measured(command, env)
    # The Data Docs worker the gate started finishes after the command (its work is off the
    # critical path, at low priority): wait for it, so that it does not run into the next
    # measurement, and say how long it took.
    from tasks.data.data_docs import wait_idle

    waited = time.perf_counter()
    wait_idle(home / "data_docs", timeout=900)
    run["data_docs_after_command_s"] = round(time.perf_counter() - waited, 1)
    summary = json.loads(run.pop("stdout"))
    stages = stage_seconds(home, summary["model"], summary["version"])
    name, theirs, _ = job["metric"]
    return {
        **run,
        f"holdout_{name}": round(summary["challenger"][theirs], 4),
        "trials_pruned": summary["trials"]["pruned"],
        "stages_s": stages,
        "outside_stages_s": round(run["wall_s"] - sum(stages.values()), 1),
    }


def script_run(anchor: Path, trials: int, seed: int, task: str = "binary") -> dict[str, Any]:
    command = [sys.executable, "-c", SEEDED_ANCHOR, str(seed), str(anchor), "12", str(trials)]
    run = run_measured(command, dict(os.environ))
    line = json.loads(run.pop("stdout").strip().splitlines()[-1])
    name = JOBS[task]["metric"][0]
    found = {f"holdout_{name}": line[f"holdout_{name}"]}
    if "naive_rmse" in line:  # the regression script's baseline: the training months' mean
        found["naive_rmse"] = line["naive_rmse"]
    return {**run, **found, "trials_pruned": line["pruned"], "script_seconds": line["seconds"]}


def anchor_script(name: str = "bare_pipeline.py") -> Path:
    """`../shared/anchors/<name>` beside the repository; from a git worktree elsewhere, beside
    the main checkout that owns it."""
    candidates = [ROOT / ANCHORS / name]
    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if common.returncode == 0 and common.stdout.strip():
        candidates.append(Path(common.stdout.strip()).parent / ANCHORS / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise SystemExit(
        f"the bare script is missing: looked for {', '.join(map(str, candidates))}; put "
        f"{name} in ../shared/anchors/ beside the repository, then rerun"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--task", choices=["binary", "regression", "both"], default="both")
    args = parser.parse_args()
    tasks = ["binary", "regression"] if args.task == "both" else [args.task]
    anchors = {task: anchor_script(JOBS[task]["anchor"]) for task in tasks}
    started = datetime.now(UTC)
    prefect_home = Path(tempfile.mkdtemp(prefix="perennial-bench-prefect-"))
    try:
        server_start = server("start", prefect_home)
        pairs = {
            task: run_pairs(anchors[task], args.pairs, args.trials, prefect_home, task)
            for task in tasks
        }
    finally:
        server("stop", prefect_home)
        shutil.rmtree(prefect_home, ignore_errors=True)
    write_result(args, started, server_start, pairs)


def run_pairs(
    anchor: Path, count: int, trials: int, prefect_home: Path, task: str = "binary"
) -> list[dict[str, Any]]:
    pairs = []
    for index in range(count):
        first_perennial = index % 2 == 0  # alternate the order
        seed = FIRST_SEED + index
        runs = {}
        for which in ("perennial", "script") if first_perennial else ("script", "perennial"):
            runs[which] = (
                perennial_run(trials, seed, prefect_home, task)
                if which == "perennial"
                else script_run(anchor, trials, seed, task)
            )
            print(task, which, json.dumps(runs[which]), flush=True)
        pairs.append(
            {
                "seed": seed,
                "order": "perennial first" if first_perennial else "script first",
                "perennial": runs["perennial"],
                "script": runs["script"],
                "ratio": round(runs["perennial"]["wall_s"] / runs["script"]["wall_s"], 2),
            }
        )
    return pairs


def write_result(
    args: argparse.Namespace,
    started: datetime,
    server_start: float,
    pairs: dict[str, list[dict[str, Any]]],
) -> None:
    """Write the tasks measured now; a task not run keeps its figures from the file."""
    result: dict[str, Any] = {}
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for key, value in previous.items():  # a task not measured now keeps its figures
        result[key] = value
    if "binary" in pairs:
        result.update(binary_row(args, pairs["binary"], server_start))
    if "regression" in pairs:
        result["regression"] = regression_row(args, pairs["regression"], server_start)
    result.update(
        {
            "cores": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "measured_at": started.isoformat(timespec="seconds"),
            "tasks_measured_at_that_time": sorted(pairs),
            "machine_note": "each run's load averages say what else ran; the two commands "
            "alternate so that both see the same conditions",
        }
    )
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    shown = {k: result[k] for k in ("median_ratio", "auc_difference") if "binary" in pairs}
    if "regression" in pairs:
        row = result["regression"]
        keys = ("median_ratio", "mean_rmse", "naive_rmse", "script_rmse_ci95")
        shown["regression"] = {
            k: row[k] for k in (*keys, "perennial_within_script_interval_or_better")
        }
    print(json.dumps(shown))


def binary_row(
    args: argparse.Namespace, pairs: list[dict[str, Any]], server_start: float
) -> dict[str, Any]:
    """The binary job's figures, at the top of the file as they always were."""
    return {
        "command_perennial": f"perennial train --batches {BATCHES} --trials {args.trials} "
        f"(PERENNIAL_SPLIT__MAX_TRAIN_ROWS={MAX_TRAIN_ROWS}, PERENNIAL_FEATURES__NUMERIC: the "
        "script's numeric features, PERENNIAL_HPO__*: the script's search, fresh home)",
        "features_numeric": SCRIPT_NUMERIC,
        "search": SCRIPT_HPO,
        "command_script": f"python ../shared/anchors/bare_pipeline.py 12 {args.trials} (TPE "
        "seed replaced per pair: SEEDED_ANCHOR)",
        "seeds": [p["seed"] for p in pairs],
        "pairs_run": args.pairs,
        **binary_timing(pairs, server_start),
        "median_auc": {
            w: round(statistics.median(p[w]["holdout_auc"] for p in pairs), 4) for w in RUNS
        },
        "mean_auc": {
            w: round(statistics.fmean(p[w]["holdout_auc"] for p in pairs), 4) for w in RUNS
        },
        "auc_difference": auc_difference(pairs),
        "pairs": pairs,
    }


def binary_timing(pairs: list[dict[str, Any]], server_start: float) -> dict[str, Any]:
    """The time ratio Perennial / script of each pair, their median and range, the median wall
    times, and the ratio of a first command (the server's start added)."""
    ratios = [pair["ratio"] for pair in pairs]
    walls = {w: statistics.median(p[w]["wall_s"] for p in pairs) for w in RUNS}
    return {
        "median_ratio": round(statistics.median(ratios), 2),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "median_wall_s": walls,
        "server_start_s": server_start,
        "first_command_ratio": round((walls["perennial"] + server_start) / walls["script"], 2),
    }


if __name__ == "__main__":
    main()
