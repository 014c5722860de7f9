"""The shared local Prefect server and the ephemeral one, with real `perennial` commands: two
commands at once start one server (and replace a stale state file), later ones reuse it,
`perennial server stop` stops it with its child; in ephemeral mode a command killed with SIGKILL
takes Prefect's temporary server with it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from flows.supervision.local_server import LOG, STATE
from flows.supervision.processes import write_private
from tasks.core.processes import start_ticks
from tests.conftest import ROOT, shared_servers_under

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PERENNIAL = str(Path(sys.executable).parent / "perennial")
T = TypeVar("T")


def command_env(tmp_path: Path, mode: str) -> dict[str, str]:
    """This process's environment without any Prefect server of the session: the command
    finds (or starts) its own."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    return {
        **inherited,
        "PERENNIAL_PREFECT": mode,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PERENNIAL_HOME": str(tmp_path / "home"),
    }


def poll(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a killed orphan waits to be reaped by init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_two_commands_at_once_start_one_shared_server_and_replace_a_stale_one(
    tmp_path: Path,
) -> None:
    prefect_home = tmp_path / "prefect"
    prefect_home.mkdir()
    # A stale state file naming a live process that is not our server (this test itself).
    me = {"pid": os.getpid(), "ticks": start_ticks(os.getpid()), "port": 9}
    write_private(prefect_home / STATE, json.dumps({**me, "url": "http://127.0.0.1:9/api"}))
    env = command_env(tmp_path, "shared")
    try:
        commands = [
            subprocess.Popen(
                [PERENNIAL, "ingest", "--batch", batch, "--no-validate"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for batch in ("2013-01", "2013-02")
        ]
        outputs = [command.communicate(timeout=600) for command in commands]
        assert [c.returncode for c in commands] == [0, 0], outputs
        started = [err for _, err in outputs if "started the local Prefect server" in err]
        assert len(started) == 1, outputs  # one started it, the other waited and reused it
        state = json.loads((prefect_home / STATE).read_text())
        assert state["pid"] != os.getpid()
        assert shared_servers_under(tmp_path) == [state["pid"]]
        assert (prefect_home / LOG).read_text().count("Check out the dashboard") == 1
        assert (prefect_home / STATE).stat().st_mode & 0o777 == 0o600
        with pytest.raises(urllib.error.HTTPError, match="401"):  # the API asks for auth
            urllib.request.urlopen(f"{state['url']}/admin/version", timeout=10)

        shown = subprocess.run(
            [PERENNIAL, "server", "status", "--json"], env=env, capture_output=True, text=True
        )
        assert json.loads(shown.stdout)["running"] is True
        assert json.loads(shown.stdout)["pid"] == state["pid"]
        server = [p for p in children(state["pid"]) if b"server\0start" in command_line(p)]
        assert len(server) == 1
    finally:
        stopped = subprocess.run(
            [PERENNIAL, "server", "stop"], env=env, capture_output=True, text=True
        )
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped the local Prefect server" in stopped.stdout
    poll(lambda: not running(server[0]), 30, "the Prefect server ends with its supervisor")
    assert not running(state["pid"]) and not (prefect_home / STATE).exists()


def test_a_command_killed_with_sigkill_takes_the_ephemeral_server_with_it(
    tmp_path: Path,
) -> None:
    command = subprocess.Popen(
        [PERENNIAL, "ingest", "--batch", "2013-01", "--no-validate"],
        cwd=ROOT,
        env=command_env(tmp_path, "ephemeral"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ephemeral_server() -> int | None:
        found = [p for p in children(command.pid) if b"uvicorn" in command_line(p)]
        return found[0] if found else None

    try:
        server = poll(ephemeral_server, 180, "the command starts Prefect's temporary server")
    finally:
        command.kill()
        command.wait()
    try:
        poll(lambda: not running(server), 30, "the temporary server dies with its command")
    finally:
        if running(server) and b"uvicorn" in command_line(server):
            os.kill(server, signal.SIGKILL)  # the bug this guards: never leak it from the test
