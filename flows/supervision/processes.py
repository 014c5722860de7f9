"""Start, stop and check the processes Perennial supervises, by what `spawn` records of each:
its pid, its start time (`tasks.core.processes.start_ticks`) and its command, kept in state
files written with `write_private`. Whether one still runs is `tasks.core.processes.pid_alive`,
the one liveness check of the project.

Imported by every `perennial` command that finds the shared Prefect server: keep it light (no
pandas, no prefect at import)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tasks.core.processes import pid_alive, start_ticks

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # prefect, mlflow and perennial of this environment
# Then SIGKILL: the Prefect worker ignores SIGTERM for more than 15 s.
STOP_GRACE_S = 10.0


def write_private(path: Path, text: str) -> None:
    """Write a file only the user can read (0600), whatever the umask, replacing it whole: a
    reader sees the old text or the new, never half of it."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def choose_port(variable: str, default: int) -> int:
    """The port in `variable` (else `default`); 0, or a port already taken, picks a free one."""
    wanted = int(os.environ.get(variable, default))
    if wanted == 0:
        return free_port()
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", wanted))
        except OSError:
            return free_port()  # the default is taken (another checkout's service?)
    return wanted


def open_log(logs: Path, name: str) -> Any:
    """A process's log, appended to, readable by the user only."""
    return os.fdopen(
        os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
    )


def spawn(name: str, command: list[str], env: dict[str, str], logs: Path) -> dict[str, Any]:
    """Start a process in its own session (so Ctrl-C in the shell leaves it running), logging to
    `logs/<name>.log`; returns what `alive` and `stop` need of it."""
    with open_log(logs, name) as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return {"pid": process.pid, "ticks": start_ticks(process.pid), "command": command}


def alive(entry: dict[str, Any]) -> bool:
    """Whether the process recorded in `entry` ({pid, ticks}) still runs: that very process,
    not a later one with its pid."""
    return pid_alive(entry["pid"], entry.get("ticks"))


def stop(entry: dict[str, Any], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process's group (it leads its own session), then SIGKILL after `grace`."""
    if not alive(entry):
        return
    pid = entry["pid"]
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, signum)  # the group: a server's own workers go with it
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap it if it is our child (`up` failing half-way), else poll
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if not alive(entry):
                    return
            time.sleep(0.2)
