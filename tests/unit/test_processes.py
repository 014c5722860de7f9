"""The one liveness check (`tasks.core.processes.pid_alive`) on real processes: a running one,
one that exited but was not reaped yet (a zombie), one that was reaped, and a pid recorded with
a start time that no longer matches (a recycled pid)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tasks.core.processes import pid_alive, start_ticks


def test_this_process_is_alive_and_so_is_its_recorded_start() -> None:
    me = os.getpid()
    assert pid_alive(me)
    assert pid_alive(me, start_ticks(me))


def test_a_recorded_start_that_differs_is_another_process() -> None:
    me = os.getpid()
    ticks = start_ticks(me)
    assert ticks is not None  # Linux: /proc is there
    assert not pid_alive(me, str(int(ticks) + 1))


def test_an_exited_child_is_dead_before_and_after_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ticks = start_ticks(child.pid)
    deadline = time.monotonic() + 30
    while pid_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child.pid)  # a zombie: exited, not reaped by us yet
    assert not pid_alive(child.pid, ticks)
    assert child.poll() == 0  # reaped now: no process has the pid
    assert not pid_alive(child.pid)


def test_no_pid_names_a_process_group() -> None:
    assert not pid_alive(0)
    assert not pid_alive(-1)
