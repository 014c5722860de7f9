"""Whether a process named in a lock or state file still runs: the Data Docs worker's lock and
the Optuna trials a crashed process left running both record a pid."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Some process has this pid (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
