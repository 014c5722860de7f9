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
