"""Served mode for real: `flows.service up` (Prefect server, MLflow server, process worker,
`prefect deploy --all`) on free ports, a champion trained against it, a month that drifts, the
monitor's event, and the automation's retrain; then five alerts at once, run one at a time.

No timing is asserted here (benchmarks/served.py measures the latencies); the test prints them.
The service is always stopped, by the PIDs it recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_perennial, served_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

DRIFTING = "2013-07"  # summer weather vs a winter-trained champion: temp, dewp, ... drift
TRIALS = "2"  # search trials per retrain: the test is about orchestration, not model quality
BURST = 5
RUN_WAIT_S = 1500.0


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    # Trials are inherited by the worker's flow runs. One search worker: parallel workers import
    # optuna_integration lazily from several threads at once, which can fail, and 2 shared cores
    # gain nothing.
    home = tmp_path_factory.mktemp("served") / "home"
    with served_stack(home, PERENNIAL_HPO__TRIALS=TRIALS, PERENNIAL_HPO__WORKERS="1") as state:
        yield state


def cli(service: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return run_perennial(service["env"], *args)


def json_of(stdout: str) -> Any:
    """The JSON document of `--json` output. MLflow prints "View run ... at <url>" lines to
    stdout when it talks to a tracking server (reported to the lead); skip them."""
    start = 0 if stdout.startswith("{") else stdout.index("\n{") + 1
    return json.loads(stdout[start:])


def api(service: dict[str, Any], call: Any) -> Any:
    """Run `call(client)` against the service's Prefect API, with its auth string."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    settings = {
        PREFECT_API_URL: service["env"]["PREFECT_API_URL"],
        PREFECT_API_AUTH_STRING: service["env"]["PREFECT_API_AUTH_STRING"],
    }

    async def main() -> Any:
        with temporary_settings(updates=settings):
            async with get_client() as client:
                return await call(client)

    return asyncio.run(main())


def training_runs(service: dict[str, Any]) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowFilter,
        FlowFilterName,
    )

    async def call(client: Any) -> list[Any]:
        deployments = DeploymentFilter(name=DeploymentFilterName(any_=["flights"]))
        flows = FlowFilter(name=FlowFilterName(any_=["training"]))
        return list(
            await client.read_flow_runs(flow_filter=flows, deployment_filter=deployments, limit=50)
        )

    return list(api(service, call))


def drift_events(service: dict[str, Any]) -> list[dict[str, Any]]:
    async def call(client: Any) -> list[dict[str, Any]]:
        body = {"filter": {"event": {"name": ["perennial.drift.detected"]}}, "limit": 50}
        reply = await client._client.post("/events/filter", json=body)
        reply.raise_for_status()
        return list(reply.json()["events"])

    return list(api(service, call))


def wait_for_runs(
    service: dict[str, Any], matches: Any, count: int, timeout: float = RUN_WAIT_S
) -> list[Any]:
    """Poll until `count` training runs whose reason matches are all in a final state."""
    deadline = time.monotonic() + timeout
    found: list[Any] = []
    while time.monotonic() < deadline:
        found = [r for r in training_runs(service) if matches(r.parameters.get("reason", ""))]
        if len(found) >= count and all(r.state and r.state.is_final() for r in found):
            return found
        time.sleep(2)
    states = [(r.name, r.state_name) for r in found]
    log = (Path(service["home"]) / "run" / "worker.log").read_text(errors="replace")[-3000:]
    raise AssertionError(f"training runs not done after {timeout:.0f} s: {states}\n{log}")


def emit_drift_events(
    service: dict[str, Any], dataset: str, batch: str, reference: str, count: int = 1
) -> None:
    """`count` drift alerts on `dataset`, from a process of their own, as the monitor sends
    them (max_psi 9, 10, ... so that each is a distinct event)."""
    script = [
        "from prefect.events import emit_event",
        f"for i in range({count}):",
        "    emit_event(event='perennial.drift.detected',",
        f"        resource={{'prefect.resource.id': 'perennial.dataset.{dataset}'}},",
        f"        payload={{'batch': '{batch}', 'max_psi': 9.0 + i,",
        f"                 'drifted_features': ['temp'], 'reference_version': '{reference}'}})",
    ]
    sent = subprocess.run(
        [sys.executable, "-c", "\n".join(script)],
        env={**os.environ, **service["env"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sent.returncode == 0, sent.stderr


def seconds(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else round((later - earlier).total_seconds(), 2)


def occurred(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred"].replace("Z", "+00:00"))


def test_drift_alert_retrains_through_the_automation_one_run_at_a_time(
    service: dict[str, Any],
) -> None:
    trained = cli(service, "train", "--batches", "2013-01..2013-03", "--json")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json_of(trained.stdout)["promoted"]
    home = Path(service["home"])
    reference = home / "reference" / "flights" / "flights-late-arrival" / "1.json"
    assert reference.is_file()  # saved with the model

    monitored = cli(service, "monitor", "--batch", DRIFTING, "--json")
    assert monitored.returncode == 0, monitored.stderr[-3000:]  # drift is not a failure
    report = json_of(monitored.stdout)
    assert report["status"] == "alert" and report["event_emitted"], report["reasons"]
    assert report["max_psi"] >= 0.25 and "temp" in report["drifted_features"]
    assert (home / "reports" / "flights" / f"drift-{DRIFTING}.png").is_file()

    [retrain] = wait_for_runs(service, lambda reason: reason.startswith(f"drift on {DRIFTING}"), 1)
    assert retrain.state_name == "Completed", retrain.state
    assert retrain.parameters["batches"] == ""
    from tasks.config import load_config
    from tasks.registry import recent_decisions

    with pytest.MonkeyPatch.context() as patch:  # the stack's URLs and credentials
        for key, value in service["env"].items():
            patch.setenv(key, value)
        decisions = recent_decisions(load_config())
    newest = decisions[0]
    assert newest["version"] == "2" and newest["decision"] in ("promoted", "rejected")
    assert DRIFTING in newest["batches"]
    [event] = drift_events(service)
    assert event["payload"]["batch"] == DRIFTING
    first_event = occurred(event)

    # Five alerts at once: five queued retrains, never two running together.
    emitted_at = datetime.now().astimezone()
    emit_drift_events(service, "flights", DRIFTING, "burst", count=BURST)
    queued = wait_for_runs(service, lambda reason: "(vs vburst)" in reason, BURST)
    assert all(run.state_name == "Completed" for run in queued), [r.state for r in queued]
    started = [r for r in training_runs(service) if r.start_time is not None]  # not the schedule's
    everything = sorted(started, key=lambda r: r.start_time)
    assert len(everything) == 1 + BURST
    for before, after in itertools.pairwise(everything):
        assert after.start_time >= before.end_time, f"{before.name} and {after.name} overlapped"

    print(
        f"event -> run started {seconds(retrain.start_time, first_event)} s, "
        f"finished {seconds(retrain.end_time, first_event)} s; burst of {BURST} done "
        f"{seconds(max(r.end_time for r in queued), emitted_at)} s after it was sent"
    )


def test_schedules_create_runs(service: dict[str, Any]) -> None:
    """The server's scheduler turns the deployments' cron schedules into scheduled runs (it
    failed with SQLAlchemy 2.1: "Can't evaluate bulk DML statement", and none appeared)."""
    deadline = time.monotonic() + RUN_WAIT_S
    scheduled: list[Any] = []
    while time.monotonic() < deadline:
        scheduled = [r for r in training_runs(service) if r.state_type.value == "SCHEDULED"]
        if scheduled:
            break
        time.sleep(2)
    assert scheduled, "no scheduled run of the training deployment"
    assert all(r.expected_start_time.day == 2 for r in scheduled)  # cron: the 2nd of the month
    log = (Path(service["home"]) / "run" / "prefect-server.log").read_text()
    assert "bulk DML" not in log
