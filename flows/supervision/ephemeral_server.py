"""Prefect's ephemeral server, bound to the command that starts it.

Without PREFECT_API_URL (and with PERENNIAL_PREFECT=ephemeral) Prefect starts a temporary
server as a child process and stops it from an atexit hook, which SIGKILL skips: a `perennial
train` killed so left its server running for good (PPID 1). Started with PR_SET_PDEATHSIG, the
child gets SIGKILL as soon as the command ends, however it ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the thread that started it ends (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Spawner:
    """Starts processes from one daemon thread that lives as long as this process: the death
    signal fires when the *thread* that forked ends, and Prefect may start its temporary server
    from a short-lived worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[tuple[Callable[[], Any], list[Any], threading.Event]] = []
        self._wake = threading.Condition(self._lock)
        threading.Thread(target=self._serve, name="perennial-spawner", daemon=True).start()

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._requests:
                    self._wake.wait()
                make, box, done = self._requests.pop(0)
            try:
                box.append(make())
            except BaseException as exc:  # handed back to the caller's thread
                box.append(exc)
            done.set()

    def run(self, make: Callable[[], Any]) -> Any:
        box: list[Any] = []
        done = threading.Event()
        with self._wake:
            self._requests.append((make, box, done))
            self._wake.notify()
        done.wait()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]


_spawner: _Spawner | None = None


def bind_ephemeral_server() -> None:
    """Make Prefect's temporary server die with this process, even on SIGKILL (PR_SET_PDEATHSIG:
    Prefect stops it only from an atexit hook, which SIGKILL skips)."""
    global _spawner
    from prefect.server.api import server as prefect_server

    if _spawner is not None:
        return
    _spawner = spawner = _Spawner()
    real_popen: Any = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> Any:
        return spawner.run(lambda: real_popen(*args, preexec_fn=die_with_parent, **kwargs))

    class BoundSubprocess:  # the module's `subprocess`, with Popen bound to this process
        def __getattr__(self, name: str) -> Any:
            return popen if name == "Popen" else getattr(subprocess, name)

    prefect_server.subprocess = BoundSubprocess()  # type: ignore[assignment]
