"""Served mode, locked down: how long `make up` takes, and how soon a drift alert
becomes a running retrain (event -> flow run created / started / finished) through the
automation and the process worker, on the stack as `make up` runs it (Prefect API auth, CSRF,
MLflow basic auth), on 127.0.0.1 with free ports and a temporary home.

    .venv/bin/python benchmarks/served.py [--events 3]

Three months of flights are landed first, so each retrain (1 search trial) is short: the figure
of interest is the orchestration's own delay. Events are sent one at a time, each after the
previous retrain finished. Writes benchmarks/results/served.json (medians, and every sample).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "served.json"
BIN = Path(sys.executable).parent
WAIT_S = 900.0


def training_run(env: dict[str, str], reason: str) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    async def main() -> Any:
        settings = {
            PREFECT_API_URL: env["PREFECT_API_URL"],
            PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"],
        }
        with temporary_settings(updates=settings):
            async with get_client() as client:
                runs = await client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=["training"])), limit=50
                )
        return next((r for r in runs if r.parameters.get("reason", "").startswith(reason)), None)

    return asyncio.run(main())


def one_event(env: dict[str, str], index: int) -> dict[str, float | None]:
    batch = "2013-03"
    reason = f"drift on {batch} max_psi={index + 1.5}"
    script = (
        "from prefect.events import emit_event\n"
        "emit_event(event='perennial.drift.detected',"
        # Its own batch label per event: the trigger retrains once per batch within the window.
        " resource={'prefect.resource.id': 'perennial.dataset.flights',"
        f" 'perennial.batch': 'bench-{index}'}},"
        f" payload={{'batch': '{batch}', 'max_psi': {index + 1.5}, 'drifted_features': ['temp'],"
        f" 'reference_version': 'bench'}})\n"
    )
    emitted = datetime.now(UTC)
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + WAIT_S
    run = None
    while time.monotonic() < deadline:
        run = training_run(env, reason)
        if run is not None and run.state is not None and run.state.is_final():
            break
        time.sleep(0.5)
    if run is None or run.start_time is None:
        raise SystemExit(f"no retrain for event {index} after {WAIT_S:.0f} s")

    def since(moment: datetime | None) -> float | None:
        return None if moment is None else round((moment - emitted).total_seconds(), 2)

    return {
        "created_s": since(run.created),
        "started_s": since(run.start_time),
        "finished_s": since(run.end_time),
        "state": run.state_name,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=3)
    events = parser.parse_args().events
    from flows.supervision.served_stack import client_env, down, up

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="perennial-served-bench-") as scratch:
        home = Path(scratch) / "home"
        os.environ.update(
            PERENNIAL_HOME=str(home),
            PERENNIAL_PREFECT_PORT="0",
            PERENNIAL_MLFLOW_PORT="0",
            PERENNIAL_HPO__TRIALS="1",
            PERENNIAL_HPO__WORKERS="1",
        )
        os.environ.pop("PREFECT_API_URL", None)
        started = time.perf_counter()
        try:
            up(home)
            up_s = round(time.perf_counter() - started, 1)
            env = {**os.environ, **client_env(home)}
            for batch in ("2013-01", "2013-02", "2013-03"):
                subprocess.run(
                    [str(BIN / "perennial"), "ingest", "--batch", batch],
                    env=env,
                    check=True,
                    capture_output=True,
                )
            samples = [one_event(env, index) for index in range(events)]
            if any(sample["state"] != "Completed" for sample in samples):
                log = (home / "run" / "worker.log").read_text(errors="replace")[-4000:]
                raise SystemExit(f"a retrain did not complete: {samples}\n{log}")
        finally:
            down(home)

    def median(key: str) -> float | None:
        values = [s[key] for s in samples if isinstance(s[key], float)]
        return round(statistics.median(values), 2) if values else None

    RESULTS.write_text(
        json.dumps(
            {
                "what": "drift event -> training flow run on the locked-down served stack "
                "(automation, process worker polling every 1 s), 127.0.0.1; the first event "
                "retrains (one search trial, three landed months); later ones find that identical "
                "training registered and finish at once, so 'finished' is the orchestration alone",
                "up_s": up_s,
                "event_to_run_created_s": median("created_s"),
                "event_to_run_started_s": median("started_s"),
                "event_to_run_finished_s": median("finished_s"),
                "samples": samples,
                "machine": {
                    "cpus": os.cpu_count(),
                    "load_average_1m_before": round(load_before[0], 2),
                    "load_average_1m_after": round(os.getloadavg()[0], 2),
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
