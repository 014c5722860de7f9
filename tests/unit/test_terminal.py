"""The CLI's quiet defaults: telemetry off and a generous ephemeral-server timeout unless the user
chose, no pydantic warning at import of the ingestion flow. (A registration says nothing of
pickle, nor warns: tests/integration/test_model_store.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import ROOT

TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def test_the_cli_sets_a_generous_ephemeral_start_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TIMEOUT, raising=False)
    assert CliRunner().invoke(app, ["status", "--help"]).exit_code == 0
    assert int(os.environ[TIMEOUT]) >= 120
    # the name is the one Prefect 3.8 reads (a fresh Settings reads the environment)
    from prefect.settings import Settings

    assert Settings().server.ephemeral.startup_timeout_seconds >= 120


def test_a_timeout_the_user_chose_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMEOUT, "300")
    assert CliRunner().invoke(app, ["status", "--help"]).exit_code == 0
    assert os.environ[TIMEOUT] == "300"


def test_the_cli_turns_telemetry_off_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PREFECT_SERVER_ANALYTICS_ENABLED", raising=False)
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.setenv("DO_NOT_TRACK", "0")
    assert CliRunner().invoke(app, ["status", "--help"]).exit_code == 0
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["DO_NOT_TRACK"] == "0"


def test_importing_the_ingestion_flow_warns_nothing() -> None:
    # Its `validate` parameter made pydantic warn at every import (CLI, worker, deploy).
    done = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", "import flows.ingestion"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_progress_reaches_the_terminal_and_other_run_records_do_not() -> None:
    import logging

    from flows.terminal import QuietConsole
    from tasks.core.run_logging import PROGRESS

    def record(
        name: str, level: int, extra: dict[str, object] | None = None, message: str = "msg"
    ) -> logging.LogRecord:
        made = logging.LogRecord(name, level, __file__, 1, message, None, None)
        made.__dict__.update(extra or {})
        return made

    quiet = QuietConsole()
    assert quiet.filter(record("prefect.task_runs", logging.INFO, PROGRESS))
    assert not quiet.filter(record("prefect.task_runs", logging.INFO))
    assert not quiet.filter(record("prefect.flow_runs", logging.ERROR))
    assert quiet.filter(record("perennial", logging.WARNING))
    # Prefect flushing its events at exit (seen once a short command no longer waited for the
    # heartbeat thread): not shown; the same worker's other warnings are.
    drain = "Still processing items: 9 items remaining..."
    assert not quiet.filter(record("EventsWorker", logging.WARNING, message=drain))
    assert quiet.filter(record("EventsWorker", logging.WARNING, message="Failed to send"))
