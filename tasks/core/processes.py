"""Whether a process named in a state or lock file still runs: the one liveness check of
Perennial. Served mode's `service.json` and the shared Prefect server's state file (flows'
supervision), the Data Docs worker's lock and the Optuna trials a crashed process left running
all record a pid, some with its start time; they all ask `pid_alive`."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None: no such
    process, or no /proc (not Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux): recorded beside a pid, it
    tells that process from a later one the kernel gave the same pid."""
    fields = _stat_fields(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def pid_alive(pid: int, ticks: str | None = None) -> bool:
    """Whether process `pid` still runs.

    A zombie (exited, not yet reaped by its parent) does not; a process this user may not
    signal does. With `ticks` (its `start_ticks` when the pid was recorded), only that very
    process counts, not a later one that reused the pid: a recorded start time that can no
    longer be read means the process is gone."""
    if pid <= 0:  # os.kill(0, ...) and (-1, ...) reach process groups, not one process
        return False
    fields = _stat_fields(pid)
    if fields is not None:
        if fields[0] == "Z":
            return False
        return ticks is None or (len(fields) > 19 and fields[19] == ticks)
    if ticks is not None:
        return False
    try:  # no /proc: all that can be asked is whether some process has this pid
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
