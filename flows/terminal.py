"""What `perennial` prints to the terminal: quiet defaults set before the heavy imports, a console
that shows warnings and the command's own output only, and one line per refused command.

Prefect logs every failed task and flow run with its traceback (twice: task, then flow) through
the `prefect.task_runs` / `prefect.flow_runs` loggers. Those records still go to the API (the UI
keeps them, in served mode too); only the terminal's console handler is filtered. `--debug`
(or PERENNIAL_DEBUG=1) turns all of this off and prints the traceback of a refusal.
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

DEBUG_VARIABLE = "PERENNIAL_DEBUG"

# Set with setdefault before prefect or mlflow is imported: a value the user exported wins.
QUIET_ENVIRONMENT = {
    # Outside `make` nothing else turns these off, and on a machine without a route to the
    # collectors each command logged "ERROR ... Failed to send telemetry".
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    # Prefect's default is 20 s; cold imports on a 2-core machine outlast it and the first run on
    # a fresh machine failed with "Timed out while attempting to connect to ephemeral Prefect API
    # server". Only the ephemeral server reads it: a served PREFECT_API_URL is not affected.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
# Only without --debug: MLflow's INFO lines ("Creating initial MLflow database tables...").
QUIET_LOG_ENVIRONMENT = {"MLFLOW_LOGGING_LEVEL": "WARNING"}

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
# Prefect's event and log workers warn "Still processing items: N items remaining..." when the
# process exits before they have sent everything; they send it all before the exit.
QUEUE_SERVICES = ("EventsWorker", "APILogWorker")
DRAIN_NOTICE = "Still processing items"
# Set by the console script: the filter then stays on until the process exits, as the ephemeral
# server logs "Stopping temporary server" at exit. In-process callers (tests) get it removed.
KEEP_QUIET_UNTIL_EXIT = False
DEBUG_HINT = "rerun with --debug for the traceback"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}


def set_quiet_defaults(environ: MutableMapping[str, str], debug: bool) -> None:
    """Telemetry off and a generous ephemeral-server start timeout, unless the user chose."""
    for name, value in QUIET_ENVIRONMENT.items():
        environ.setdefault(name, value)
    if debug:
        environ[DEBUG_VARIABLE] = "1"
    else:
        for name, value in QUIET_LOG_ENVIRONMENT.items():
            environ.setdefault(name, value)


class QuietConsole(logging.Filter):
    """Console filter: no flow- or task-run records (they go to the Prefect API and UI, and a
    refusal's traceback is among them: the CLI prints the one line that matters and the command's
    summary), and warnings and errors only from everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "perennial_progress", False):  # tasks.core.run_logging.PROGRESS
            return True
        if record.name in QUEUE_SERVICES and record.getMessage().startswith(DRAIN_NOTICE):
            return False  # Prefect flushing its queues at exit: no fault, nothing to do
        return record.levelno >= logging.WARNING and not record.name.startswith(RUN_LOGGERS)


@contextmanager
def quiet_console() -> Iterator[None]:
    """Filter Prefect's console handler for the duration of a flow run (not under --debug).

    A filter rather than a handler level: Prefect re-applies its logging config incrementally
    (handler levels included) when settings change, and filters survive that."""
    if debug_enabled():
        yield
        return
    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    quiet = QuietConsole()
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        if not KEEP_QUIET_UNTIL_EXIT:
            for handler in handlers:
                handler.removeFilter(quiet)


def one_line(text: str) -> str:
    """A message on one line: continuation lines joined with '; '."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def refusal_line(exc: BaseException) -> str:
    """The line printed for rejected input; its traceback first under --debug."""
    if debug_enabled():
        traceback.print_exception(exc)
    return f"rejected: {one_line(str(exc))}"


def crash_line(exc: BaseException) -> str:
    """The line printed for an unexpected error: what broke, and how to see where."""
    if debug_enabled():
        traceback.print_exception(exc)
        return f"error: {type(exc).__name__}: {one_line(str(exc))}"
    return f"error: {type(exc).__name__}: {one_line(str(exc))} ({DEBUG_HINT})"
