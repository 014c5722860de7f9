"""Served mode for real: `make up` (Prefect server, MLflow server, process worker,
`prefect deploy --all`) on free ports, a champion trained against it, a month that drifts, the
monitor's event and alert, and the automation's retrain; then five identical drift alerts at
once, from five processes: one alert reaches people (a real local HTTP receiver) and one retrain
runs.

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
from pytest_httpserver import HTTPServer

from tests.conftest import process_environment, run_perennial, served_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

# Spring weather against a winter-trained champion (temp, dewp, ... drift), which scores April
# below its holdout interval: the monitor alerts on the performance, not on the weather alone.
DRIFTING = "2013-04"
BURST_BATCH = "2013-08"
TRIALS = "2"  # search trials per retrain: the test is about orchestration, not model quality
BURST = 5
RUN_WAIT_S = 1500.0


@pytest.fixture(scope="module")
def receiver(make_httpserver: HTTPServer) -> HTTPServer:
    """The flights config's webhook channel (PERENNIAL_ALERT_WEBHOOK_URL) points here."""
    make_httpserver.expect_request("/hooks/generic", method="POST").respond_with_data("ok")
    return make_httpserver


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, receiver: HTTPServer
) -> Iterator[dict[str, Any]]:
    # Trials are inherited by the worker's flow runs. One search worker: parallel workers import
    # optuna_integration lazily from several threads at once, which can fail, and 2 shared cores
    # gain nothing.
    home = tmp_path_factory.mktemp("served") / "home"
    with served_stack(
        home,
        PERENNIAL_HPO__TRIALS=TRIALS,
        PERENNIAL_HPO__WORKERS="1",
        PERENNIAL_ALERT_WEBHOOK_URL=receiver.url_for("/hooks/generic"),
    ) as state:
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
        f"        resource={{'prefect.resource.id': 'perennial.dataset.{dataset}',",
        f"                  'perennial.batch': '{batch}'}},",
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


def announce_drift_from_processes(
    service: dict[str, Any], batch: str, reference: str, count: int
) -> None:
    """`count` processes at once each raise the drift of `batch` as the monitor does
    (`tasks.watch.drift.announce_drift`: the alert, then the event)."""
    script = "\n".join(
        [
            "from tasks.core.config import load_config",
            "from tasks.watch.drift import DriftReport, announce_drift",
            f"report = DriftReport(dataset='flights', batch='{batch}',",
            f"    reference_version='{reference}', rows=1000, status='alert', psi={{'temp': 9.0}},",
            "    max_psi=9.0, drifted_features=['temp'], warned_features=[],",
            "    reasons=['temp PSI 9.000 >= 0.25'])",
            "announce_drift(load_config(), report)",
        ]
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env={**os.environ, **service["env"]},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=300)
        assert process.returncode == 0, errors[-3000:]


def alerts_received(receiver: HTTPServer, kind: str, subject: str) -> list[dict[str, Any]]:
    bodies = [json.loads(request.get_data()) for request, _ in receiver.log]
    return [b for b in bodies if b["kind"] == kind and b["subject"] == subject]


def seconds(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else round((later - earlier).total_seconds(), 2)


def occurred(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred"].replace("Z", "+00:00"))


def test_drift_alert_retrains_through_the_automation_once_per_batch(
    service: dict[str, Any], receiver: HTTPServer
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
    [alert] = alerts_received(receiver, "drift", DRIFTING)  # linked to the monitor's run
    assert alert["link"].startswith(f"{service['prefect_ui']}/runs/flow-run/")
    assert alert["facts"]["max PSI"] == round(report["max_psi"], 4)
    assert "temp" in alert["facts"]["drifted features"]
    assert alerts_received(receiver, "promotion", "v1")  # the first champion, by `train`

    [retrain] = wait_for_runs(service, lambda reason: reason.startswith(f"drift on {DRIFTING}"), 1)
    assert retrain.state_name == "Completed", retrain.state
    assert retrain.parameters["batches"] == ""
    from tasks.core.config import load_config
    from tasks.registry.champion import recent_decisions

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

    # Five identical drift alerts at once, from five processes: one alert, one retrain (the
    # trigger counts once per batch within the window; the alert is claimed once in storage).
    emitted_at = datetime.now().astimezone()
    announce_drift_from_processes(service, BURST_BATCH, "burst", count=BURST)
    [burst_run] = wait_for_runs(service, lambda reason: "(vs vburst)" in reason, 1)
    # All five reached the server (counted once the run is done: the server stores events
    # asynchronously, so a count right after the senders exit may miss the last ones).
    assert len(drift_events(service)) == 1 + BURST
    assert burst_run.state_name == "Completed", burst_run.state
    # The trigger acts within seconds of an event; a retrain takes far longer: any duplicate
    # run would exist by now.
    assert len([r for r in training_runs(service) if "(vs vburst)" in r.parameters["reason"]]) == 1
    assert len(alerts_received(receiver, "drift", BURST_BATCH)) == 1
    started = [r for r in training_runs(service) if r.start_time is not None]  # not the schedule's
    everything = sorted(started, key=lambda r: r.start_time)
    assert len(everything) == 2
    for before, after in itertools.pairwise(everything):
        assert after.start_time >= before.end_time, f"{before.name} and {after.name} overlapped"

    print(
        f"event -> run started {seconds(retrain.start_time, first_event)} s, "
        f"finished {seconds(retrain.end_time, first_event)} s; burst of {BURST}: one run, done "
        f"{seconds(burst_run.end_time, emitted_at)} s after it was sent"
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


def test_flow_runs_get_the_credentials_they_use_and_no_other(service: dict[str, Any]) -> None:
    """The worker's environment is each flow run's, where the alert channels of any dataset YAML
    run: it holds what flows use (Prefect's auth string, MLflow's user: the stack has no MLflow
    user but its admin), not the scoring services' token (the databases' password:
    tests/e2e/test_served_postgres.py)."""
    processes = service["processes"]
    credentials = service["env"]
    worker = process_environment(processes["worker"]["pid"])
    serving = process_environment(processes["serve-flights"]["pid"])
    # Compared by name, never printed: a failure shows which, not the values.
    used = ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    assert [name for name in used if worker.get(name) == credentials[name]] == list(used)
    unused = ("PERENNIAL_SERVE_TOKEN", "MLFLOW_FLASK_SERVER_SECRET_KEY")
    assert sorted(set(unused) & set(worker)) == []
    assert not any(credentials["PERENNIAL_SERVE_TOKEN"] in value for value in worker.values())
    serving_has_token = serving.get("PERENNIAL_SERVE_TOKEN") == credentials["PERENNIAL_SERVE_TOKEN"]
    assert serving_has_token  # `perennial serve` still checks its bearer token
