"""The shared local Prefect server: started once, in the background, by the first `perennial`
command that runs a flow, and reused by every later one (a command then pays about 0.1 s to find
it instead of 15-20 s to start an ephemeral server of its own).

    PREFECT_HOME/local-server.json    {pid, port, url, started} (0600)
    PREFECT_HOME/local-server.secret  the API auth string (0600, kept across restarts)
    PREFECT_HOME/local-server.lock    flock around find-or-start: two commands, one server
    PREFECT_HOME/local-server.log     the server's log
    PREFECT_HOME/local-server.users   each command using the server holds a shared flock on it

The recorded process is a small supervisor (`python -m flows.supervision.local_server
supervise`) leading its own session: it runs `prefect server start` as its child, bound to it
by PR_SET_PDEATHSIG, and stops it after PERENNIAL_PREFECT_IDLE_MINUTES (default 60; 0 = never)
in which no command found it, once no command holds it (a long training run does), so a laptop
does not keep ~250 MB for good.
Locked down as `make up` is (`flows.supervision.prefect_server`): API auth string (environment,
never argv), CSRF on, CORS for its own origin only, 127.0.0.1.

Not used when PREFECT_API_URL is set (served mode, tests) or with PERENNIAL_PREFECT=ephemeral:
then Prefect starts its temporary in-process server, which `flows.supervision.ephemeral_server`
binds to the command so that a command killed with SIGKILL leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

from flows.supervision.ephemeral_server import die_with_parent
from flows.supervision.prefect_server import prefect_server_command, server_settings
from flows.supervision.processes import alive, free_port, stop, write_private
from tasks.core.processes import start_ticks

MODE_VARIABLE = "PERENNIAL_PREFECT"  # "shared" (default) or "ephemeral"
IDLE_VARIABLE = "PERENNIAL_PREFECT_IDLE_MINUTES"
STATE, SECRET, LOCK, LOG, USERS = (
    "local-server.json",
    "local-server.secret",
    "local-server.lock",
    "local-server.log",
    "local-server.users",  # each command using the server holds a shared flock on it
)
# In the recorded pid's command line: tells our server from a process that reused its pid.
SUPERVISOR = "flows.supervision.local_server"
# The supervisor's module before it moved under flows/supervision/: a server started by an
# older checkout is still found (and reused, or stopped) rather than left running beside a new
# one on the same database until its idle stop.
EARLIER_SUPERVISORS = ("flows.local_server",)
START_TIMEOUT_S = 300.0  # a cold first start on a busy 2-core machine took more than 60 s
HEALTH_TIMEOUT_S = 2.0
HUNG_AFTER_S = 30.0
IDLE_CHECK_S = 30.0  # at most: a short idle period is checked four times within it


class LocalServerError(RuntimeError):
    """The shared server would not start: the message names its log."""


def prefect_home(environ: MutableMapping[str, str] = os.environ) -> Path:
    return Path(environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser().resolve()


def api_url_configured(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether Prefect is pointed at a server: PREFECT_API_URL in the environment, or, once
    prefect is imported, in a Prefect profile or temporary settings (the tests' server)."""
    if environ.get("PREFECT_API_URL"):
        return True
    if "prefect" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return bool(PREFECT_API_URL.value())
    return False


def wanted(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether a command should use the shared server: not when the user points Prefect at a
    server of their own, nor in ephemeral mode."""
    if environ.get(MODE_VARIABLE, "shared").strip().lower() == "ephemeral":
        return False
    return not api_url_configured(environ)


def is_ours(state: dict[str, Any]) -> bool:
    """The recorded pid is alive, is the process we started (same start time), and runs the
    supervisor: a stale file naming a dead or recycled pid is not trusted."""
    if not alive(state):
        return False
    try:
        command = Path(f"/proc/{state['pid']}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(name.encode() in command for name in (SUPERVISOR, *EARLIER_SUPERVISORS))


def healthy(url: str, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((home / STATE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def auth_string(home: Path) -> str:
    """The server's API auth string, made once and kept (0600): clients started before a restart
    of the server still hold the right one."""
    path = home / SECRET
    if path.is_file():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    write_private(path, secret + "\n")
    return secret


@contextlib.contextmanager
def locked(home: Path, name: str = LOCK, how: int = fcntl.LOCK_EX) -> Iterator[bool]:
    """A flock on a file of `home` (exclusive by default; the kernel releases it if the holder
    dies). Yields whether it was taken: with LOCK_NB in `how` it may not be."""
    from tasks.core.private_state import private_folder

    private_folder(home)  # Prefect's database, settings and this server's secret live here
    descriptor = os.open(home / name, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, how)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)  # closing releases the lock


_in_use: list[contextlib.ExitStack] = []


def mark_in_use(home: Path) -> None:
    """Hold a shared lock on the users file until this process ends: the server is not idle
    while a command (a long training run too) uses it, and a killed command frees it."""
    stack = contextlib.ExitStack()
    stack.enter_context(locked(home, USERS, fcntl.LOCK_SH))
    _in_use.append(stack)


def find(home: Path) -> dict[str, Any] | None:
    """The running shared server of this PREFECT_HOME, or None (a stale state file is removed)."""
    state = read_state(home)
    if state is None:
        return None
    ours = is_ours(state)
    # A busy machine can keep a healthy server from answering within seconds: replace it only
    # if it stays silent for HUNG_AFTER_S.
    deadline = time.monotonic() + HUNG_AFTER_S
    while ours and time.monotonic() < deadline:
        if healthy(state["url"]):
            os.utime(home / STATE)  # "used now": the idle clock restarts
            return state
        time.sleep(0.25)
        ours = is_ours(state)
    if ours:  # alive but not answering (hung): replace it
        stop(state)
    (home / STATE).unlink(missing_ok=True)
    return None


def start(home: Path, secret: str) -> dict[str, Any]:
    """Start the supervisor in its own session, detached, and wait until the API answers."""
    if not os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL"):
        from tasks.core.private_state import private_file

        private_file(home / "prefect.db")  # Prefect's default database, made 0600 before it is
    log = os.open(home / LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", SUPERVISOR, "supervise", str(free_port())],
            env={**os.environ, "PERENNIAL_LOCAL_SERVER_AUTH": secret},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C or the end of the command leaves it running
        )
    finally:
        os.close(log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state(home)
        if state and state["pid"] == process.pid and healthy(state["url"]):
            return state
        if process.poll() is not None:
            break
        time.sleep(0.25)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    (home / STATE).unlink(missing_ok=True)
    raise LocalServerError(
        f"the local Prefect server did not start within {START_TIMEOUT_S:.0f} s: see "
        f"{home / LOG}, or set {MODE_VARIABLE}=ephemeral"
    )


def ensure(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any] | None:
    """Find or start the shared server and point this process (and its children) at it.
    Returns its state, or None when the shared server is not wanted."""
    if not wanted(environ):
        return None
    home = prefect_home(environ)
    with locked(home):
        secret = auth_string(home)
        found = find(home)
        state = {**(found or start(home, secret)), "new": found is None}
        mark_in_use(home)
    environ["PREFECT_API_URL"] = state["url"]
    environ["PREFECT_API_AUTH_STRING"] = secret
    return state


@contextlib.contextmanager
def connected(state: dict[str, Any] | None) -> Iterator[None]:
    """Prefect reads its settings at import: when it is already imported, the server found by
    `ensure` reaches it through temporary settings."""
    if state is None:
        yield
        return
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    secret = auth_string(prefect_home())
    with temporary_settings({PREFECT_API_URL: state["url"], PREFECT_API_AUTH_STRING: secret}):
        yield


def stop_server(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any] | None:
    """Stop the shared server (SIGTERM to its session, SIGKILL after a grace period)."""
    home = prefect_home(environ)
    with locked(home):
        state = read_state(home)
        if state is not None and is_ours(state):
            stop(state)
        (home / STATE).unlink(missing_ok=True)
    return state if state is not None and not alive(state) else None


def server_status(environ: MutableMapping[str, str] = os.environ) -> dict[str, Any]:
    home = prefect_home(environ)
    state = read_state(home)
    running = bool(state and is_ours(state) and healthy(state["url"]))
    return {**(state or {}), "running": running, "home": str(home), "log": str(home / LOG)}


# -- the supervisor: `python -m flows.supervision.local_server supervise PORT` ------------------


def idle_seconds(environ: MutableMapping[str, str] = os.environ) -> float:
    minutes = float(environ.get(IDLE_VARIABLE, "60") or 0)
    return minutes * 60


def stop_if_idle(home: Path, server: subprocess.Popen[bytes], limit: float) -> bool:
    """Stop the server if no command has found it for `limit` seconds and none holds it now.
    Under the find-or-start lock (skipped if a command holds it), so that no command finds the
    server while it stops."""
    with locked(home, LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB) as mine:
        used = (home / STATE).stat().st_mtime if (home / STATE).exists() else 0.0
        if not mine or time.time() - used <= limit:
            return False
        with locked(home, USERS, fcntl.LOCK_EX | fcntl.LOCK_NB) as unused:
            if not unused:
                return False
            print(f"idle for {limit:.0f} s: stopping", flush=True)
            server.terminate()
            server.wait()
            (home / STATE).unlink(missing_ok=True)
            return True


def supervise(port: int) -> int:
    """Run the Prefect server, record it, and stop it after the idle period."""
    home = prefect_home()
    secret = os.environ.pop("PERENNIAL_LOCAL_SERVER_AUTH")
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")},
        **server_settings(port),
        "PREFECT_HOME": str(home),
        "PREFECT_UI_API_URL": url,  # else the UI calls port 4200 and shows nothing
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_AUTH_STRING": secret,
    }
    server = subprocess.Popen(
        prefect_server_command(port), env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
    )
    signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    state = {"pid": os.getpid(), "ticks": start_ticks(os.getpid()), "port": port, "url": url}
    write_private(home / STATE, json.dumps({**state, "started": time.time()}, indent=2))
    limit = idle_seconds()
    while server.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=min(IDLE_CHECK_S, limit / 4) if limit else None)
            break
        if limit and stop_if_idle(home, server, limit):
            break
    # Not under the lock: `stop_server` holds it while it waits for this process to end.
    if (read_state(home) or {}).get("pid") == os.getpid():
        (home / STATE).unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) == 2 and args[0] == "supervise":
        return supervise(int(args[1]))
    print("usage: python -m flows.supervision.local_server supervise PORT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
