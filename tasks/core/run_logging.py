"""The logger of the Prefect run a function is called in, so its lines show in the UI."""

from __future__ import annotations

import logging


def run_logger(
    fallback: str = "perennial",
) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The Prefect run logger inside a flow or task, else the plain logger `fallback`."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(fallback)


# `logger.info(..., extra=PROGRESS)`: progress of long work (trials, batches of a bulk ingest)
# that the CLI shows on the terminal, where other run records are kept to the Prefect UI.
PROGRESS = {"perennial_progress": True}
