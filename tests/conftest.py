"""Shared fixtures. Integration and e2e tests use real Prefect (one temporary server for the
session), real GE, Optuna, XGBoost and MLflow (SQLite in a temporary PERENNIAL_HOME)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
FLIGHTS = ROOT / "configs" / "flights.yaml"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The Makefile exports PERENNIAL_HOME for the commands it runs; a test picks its own home (a
# fixture below, or a test YAML's own folder), never the one of the shell that started pytest:
# with it inherited, tests whose YAML names no home shared one and saw each other's state.
os.environ.pop("PERENNIAL_HOME", None)
# Nor any other setting of the shell that started pytest: a sourced served-mode env file
# (PREFECT_API_URL, MLFLOW_TRACKING_*, PERENNIAL_MLFLOW_URI) or an exported back end would point
# the tests at the user's own servers and state. The telemetry switches above are the tests' own.
for _name in list(os.environ):
    if _name.startswith(("PERENNIAL_", "PREFECT_API_", "MLFLOW_TRACKING_")) or _name in (
        "PREFECT_PROFILE",
        "MLFLOW_S3_ENDPOINT_URL",
    ):
        os.environ.pop(_name)
# A CLI command with no PREFECT_API_URL starts (or reuses) a shared local Prefect server that
# outlives it. Tests use the session's temporary server (`prefect_api_url`) or Prefect's
# ephemeral one, bound to the command; only tests of the shared server opt in, with their own
# PREFECT_HOME, and stop it (`no_shared_server_left` checks at the end of the session).
os.environ["PERENNIAL_PREFECT"] = "ephemeral"
# Data Docs are rendered after a gate by a background worker that imports GE (6 s of CPU or more
# each): the tests about Data Docs turn them on (`PERENNIAL_VALIDATION__DATA_DOCS=true`) and wait
# for the worker; every other test would only leave workers running into the next tests.
os.environ["PERENNIAL_VALIDATION__DATA_DOCS"] = "false"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One temporary Prefect server for the whole session (it takes about 15 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def process_command_lines() -> str:
    """Every running process's command line, one per line, read from /proc (as `ps -eo args`
    shows them, without needing `ps`, which slim images lack)."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append(
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
            except OSError:
                continue
    return "\n".join(lines)


def process_environment(pid: int) -> dict[str, str]:
    """The environment a running process was started with, read from /proc."""
    raw = (Path("/proc") / str(pid) / "environ").read_bytes()
    pairs = (item.decode(errors="replace").split("=", 1) for item in raw.split(b"\0") if item)
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def shared_servers_under(folder: Path) -> list[int]:
    """PIDs of shared local Prefect servers (their supervisors) whose PREFECT_HOME is under
    `folder`: read from /proc, as they run detached from the process that started them."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flows.supervision.local_server\0supervise" not in command:
            continue
        homes = [v[len(b"PREFECT_HOME=") :] for v in environ if v.startswith(b"PREFECT_HOME=")]
        if any(Path(os.fsdecode(h)).is_relative_to(folder) for h in homes):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_shared_server_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fails the session if a test left a shared local Prefect server running."""
    yield
    left = shared_servers_under(tmp_path_factory.getbasetemp())
    assert not left, f"tests left shared local Prefect servers running: pids {left}"


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def permissive_umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The test runs under the usual umask and under 000 (files and folders as wide as the
    mode asked for): private state must be private under both."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh PERENNIAL_HOME for one test."""
    state = tmp_path / "home"
    monkeypatch.setenv("PERENNIAL_HOME", str(state))
    return state


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A PERENNIAL_HOME shared by the tests of one module (a scenario in steps)."""
    state = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERENNIAL_HOME", str(state))
        yield state


@pytest.fixture(scope="session")
def prefect_api_url(prefect_server: None) -> str:
    """URL of the session's temporary Prefect server, for CLI subprocesses to report to."""
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url and url.startswith("http://127.0.0.1:"), url
    return str(url)


def run_console_script(
    script: str, env: dict[str, str], *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """A console script of this environment (`perennial`, `prefect`, ...) in a subprocess, from
    the project folder, with `env` on top of this process's environment."""
    return subprocess.run(
        [str(Path(sys.executable).parent / script), *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_perennial(
    env: dict[str, str], *args: str, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return run_console_script("perennial", env, *args, timeout=timeout)


def stop_process(process: subprocess.Popen[Any], grace_s: float = 20) -> None:
    """SIGTERM, then SIGKILL after the grace period: every process a test starts, by PID."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def flights_only_configs(folder: Path) -> Path:
    """A configs folder holding the flights YAML alone (its GE root made absolute)."""
    flights = yaml.safe_load(FLIGHTS.read_text())
    flights["validation"]["gx_root"] = str(ROOT / "great_expectations")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flights.yaml").write_text(yaml.safe_dump(flights))
    return folder


@contextlib.contextmanager
def served_stack(home: Path, **env: str) -> Iterator[dict[str, Any]]:
    """`make up` (`flows.supervision.served_stack.up`: Prefect server, MLflow server, worker,
    deployments) on free ports with PERENNIAL_HOME=`home` and `env`; always stopped by the PIDs
    it recorded. Yields the service state with `env` holding what a client needs, credentials
    included."""
    from flows.supervision.served_stack import client_env, down, up

    if "PERENNIAL_CONFIGS_DIR" not in env:
        # The flights dataset alone: `configs/` also holds the other demo datasets, and each
        # served dataset is one more `perennial serve` process and set of deployments, which
        # these tests do not look at (test_served_team serves two datasets of its own).
        env = {**env, "PERENNIAL_CONFIGS_DIR": str(flights_only_configs(home.parent / "configs"))}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PERENNIAL_HOME", str(home))
        patch.setenv("PERENNIAL_PREFECT_PORT", "0")
        patch.setenv("PERENNIAL_MLFLOW_PORT", "0")
        patch.delenv("PREFECT_API_URL", raising=False)
        patch.delenv("PERENNIAL_DB_URL", raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        try:
            state = up(home)
            yield {**state, "env": client_env(home)}
        finally:
            down(home)


def pytest_make_parametrize_id(config: pytest.Config, val: object, argname: str) -> str | None:
    """Bytes parameters are named by their length: gzip and zip bytes hold the time they were
    made, and pytest-xdist needs every worker to collect the same test ids."""
    if isinstance(val, bytes):
        return f"{argname}-{len(val)}-bytes"
    return None
