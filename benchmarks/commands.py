"""Wall time of whole `perennial` commands (a fresh process each), with the shared local Prefect
server against Prefect's ephemeral server (the way every command ran before), in one run,
alternating; and `perennial status` read with sqlite3 against the same read through MLflow's
client (what status did before). Each in a fresh temporary PREFECT_HOME and PERENNIAL_HOME.

    .venv/bin/python benchmarks/commands.py [--runs 3]

Writes benchmarks/results/commands.json: medians of --runs, ratios, the 1-minute load average
at start and end (the machine is shared: read the figures with it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "commands.json"
PERENNIAL = str(Path(sys.executable).parent / "perennial")
MONTHS = [f"2013-{month:02d}" for month in range(1, 13)]
FIND_SERVER = (
    "import time; started = time.perf_counter(); "
    "from flows.supervision.local_server import ensure; "
    "assert not ensure()['new']; print(time.perf_counter() - started)"
)
STATUS_BY_MLFLOW = (
    "from flows.cli.registry import registry_status_by_mlflow; "
    "from flows.cli.runner import read_config; "
    "registry_status_by_mlflow(read_config(None))"
)
REGISTRY = """
from mlflow import MlflowClient
from tasks.core.config import load_config
config = load_config(None)
client = MlflowClient(config.tracking_uri, config.tracking_uri)
experiment = client.create_experiment(config.dataset, artifact_location="file:///tmp/none")
client.create_registered_model(config.model_name)
for number in range(5):
    run = client.create_run(experiment).info.run_id
    for name in ("holdout_roc_auc", "cost_usd", "cost_wall_seconds", "cost_cpu_seconds"):
        client.log_metric(run, name, 0.5 + number / 10)
    version = client.create_model_version(config.model_name, "/tmp/none", run).version
    client.set_model_version_tag(config.model_name, version, "perennial.decision", "promoted")
client.set_registered_model_alias(config.model_name, "champion", "5")
"""


def wall_s(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    return round(time.perf_counter() - started, 3)


def run_python(code: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def measure(runs: int, folder: Path) -> dict[str, object]:
    from tasks.data.data_docs import wait_idle

    # Bytecode cached as on a user's machine after the first run (this machine's shell sets
    # PYTHONDONTWRITEBYTECODE, and compiling every module again cost about 5 s a command).
    skip = ("PREFECT_API", "PYTHONDONTWRITEBYTECODE")
    base = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
    base |= {"PERENNIAL_HOME": str(folder / "home"), "PREFECT_HOME": str(folder / "prefect")}
    shared = {**base, "PERENNIAL_PREFECT": "shared"}
    ephemeral = {**base, "PERENNIAL_PREFECT": "ephemeral"}
    ingest = [PERENNIAL, "ingest", "--no-validate", "--batch"]
    months = iter(MONTHS)
    for warm_up in ("import prefect, pandas, mlflow, great_expectations", "import flows.cli"):
        subprocess.run([sys.executable, "-c", warm_up], cwd=ROOT, env=base, check=True)
    try:
        first_command_s = wall_s([*ingest, next(months)], shared)  # starts the shared server
        with_server, without = [], []
        for _ in range(runs):  # alternating, so that a change in load hits both
            with_server.append(wall_s([*ingest, next(months)], shared))
            without.append(wall_s([*ingest, next(months)], ephemeral))
        gated = []
        for _ in range(runs):
            gated.append(wall_s([PERENNIAL, "ingest", "--batch", next(months)], shared))
            # Its Data Docs worker runs on after the command (at low priority): let it finish
            # before the next measurement.
            wait_idle(folder / "home" / "data_docs", timeout=600)
        found = [float(run_python(FIND_SERVER, shared)) for _ in range(runs)]
    finally:
        subprocess.run([PERENNIAL, "server", "stop"], env=shared, capture_output=True)
    subprocess.run([sys.executable, "-c", REGISTRY], cwd=ROOT, env=base, check=True)
    status = [wall_s([PERENNIAL, "status"], base) for _ in range(runs)]
    by_mlflow = [wall_s([sys.executable, "-c", STATUS_BY_MLFLOW], base) for _ in range(runs)]
    floor = [wall_s([sys.executable, "-c", "import prefect, pandas"], base) for _ in range(runs)]
    return {
        "first_command_with_server_start_s": first_command_s,
        "ingest_shared_server_s": median(with_server),
        "ingest_ephemeral_server_s": median(without),
        "ingest_shared_over_ephemeral": round(median(with_server) / median(without), 3),
        "ingest_with_gate_shared_server_s": median(gated),
        "find_running_server_s": median(found),
        "status_s": median(status),
        "status_through_mlflow_client_s": median(by_mlflow),
        "status_over_mlflow_client": round(median(status) / median(by_mlflow), 3),
        "import_prefect_and_pandas_s": median(floor),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as folder:
        figures = measure(runs, Path(folder))
    results = {
        "what": "wall time of a fresh `perennial` process, median of runs; ingest lands a "
        "flights month (~28k rows) with --no-validate unless named with_gate",
        "runs": runs,
        **figures,
        "load_average_start": load_before,
        "load_average_end": round(os.getloadavg()[0], 2),
        "machine": f"{os.cpu_count()} cores; the load averages say what else ran",
        "bytecode": "cached (a warm-up run wrote it), as after a first run or make install",
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
