"""The shared local Prefect server's plain parts, without starting one: when it is wanted, and
how a stale state file is told from ours (the server itself runs in
tests/integration/test_local_server.py)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.supervision import local_server
from flows.supervision.processes import write_private
from tasks.core.processes import start_ticks


def test_the_shared_server_is_not_wanted_with_a_server_url_or_in_ephemeral_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As in a fresh command, before prefect is imported (in this session the temporary server
    # of other tests may be in prefect's settings).
    monkeypatch.delitem(sys.modules, "prefect", raising=False)
    assert local_server.wanted({"PERENNIAL_PREFECT": "shared"}) is True
    assert local_server.wanted({"PERENNIAL_PREFECT": "ephemeral"}) is False
    assert local_server.wanted({"PREFECT_API_URL": "http://127.0.0.1:1/api"}) is False


def test_a_state_file_naming_a_dead_pid_is_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = {"pid": dead.pid, "ticks": "1", "port": 9, "url": "http://127.0.0.1:9/api"}
    write_private(tmp_path / local_server.STATE, json.dumps(state))
    assert local_server.find(tmp_path) is None
    assert not (tmp_path / local_server.STATE).exists()


def test_a_state_file_naming_a_live_process_that_is_not_our_server_is_removed(
    tmp_path: Path,
) -> None:
    me = {"pid": os.getpid(), "ticks": start_ticks(os.getpid()), "port": 9}
    write_private(tmp_path / local_server.STATE, json.dumps({**me, "url": "http://x:9/api"}))
    assert local_server.is_ours(me) is False
    assert local_server.find(tmp_path) is None
    assert not (tmp_path / local_server.STATE).exists()


@pytest.mark.parametrize("module", [local_server.SUPERVISOR, *local_server.EARLIER_SUPERVISORS])
def test_a_supervisor_is_known_by_its_module_now_and_before_it_moved(module: str) -> None:
    # A process whose arguments hold the module as `-m MODULE supervise PORT` would.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", module])
    try:
        # Until the child has exec'd, /proc shows the forked parent's arguments (slow under load).
        cmdline = Path(f"/proc/{sleeper.pid}/cmdline")
        deadline = time.monotonic() + 30
        while module.encode() not in cmdline.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        entry = {"pid": sleeper.pid, "ticks": start_ticks(sleeper.pid)}
        assert local_server.is_ours(entry) is True
        assert local_server.is_ours({**entry, "ticks": "1"}) is False  # a recycled pid
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_auth_string_is_made_once_and_kept_private(tmp_path: Path) -> None:
    first = local_server.auth_string(tmp_path)
    assert len(first) >= 32 and local_server.auth_string(tmp_path) == first
    assert (tmp_path / local_server.SECRET).stat().st_mode & 0o777 == 0o600


def test_idle_minutes_are_configurable() -> None:
    assert local_server.idle_seconds({}) == 3600
    assert local_server.idle_seconds({local_server.IDLE_VARIABLE: "0"}) == 0
    assert local_server.idle_seconds({local_server.IDLE_VARIABLE: "2.5"}) == 150


def test_server_status_and_stop_with_none_running(tmp_path: Path) -> None:
    env = {"PREFECT_HOME": str(tmp_path)}
    shown = CliRunner().invoke(app, ["server"], env=env)
    assert shown.exit_code == 0 and "no local Prefect server running" in shown.output
    stopped = CliRunner().invoke(app, ["server", "stop"], env=env)
    assert stopped.exit_code == 0 and "no local Prefect server was running" in stopped.output
    wrong = CliRunner().invoke(app, ["server", "restart"], env=env)
    assert wrong.exit_code == 2 and "unknown action" in wrong.output


def test_an_idle_server_stops_only_when_no_command_holds_it(tmp_path: Path) -> None:
    server = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        write_private(tmp_path / local_server.STATE, "{}")
        assert not local_server.stop_if_idle(tmp_path, server, limit=60)  # found just now
        long_ago = time.time() - 120
        os.utime(tmp_path / local_server.STATE, (long_ago, long_ago))
        with local_server.locked(tmp_path, local_server.USERS, fcntl.LOCK_SH):
            assert not local_server.stop_if_idle(tmp_path, server, limit=60)  # a command runs
        assert server.poll() is None
        assert local_server.stop_if_idle(tmp_path, server, limit=60)
        assert server.returncode is not None
        assert not (tmp_path / local_server.STATE).exists()
    finally:
        server.kill()
        server.wait()
