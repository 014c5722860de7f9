"""The `perennial` Typer app and what every command shares on its command line: `--debug`
(the callback, run before any command), `--config` and `--json`.

Command modules register on `app`; `flows/cli/__init__.py` imports them. This module imports
none of them, so that they can import it."""

from __future__ import annotations

import os
from pathlib import Path

import typer

app = typer.Typer(
    help="Perennial: continuous training for tabular ML (validate, tune, train, promote, monitor).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help: rendering it with rich imports rich's markdown and traceback modules, which
    # made `perennial --help` take 0.5-0.9 s instead of about 0.15 s.
    rich_markup_mode=None,
)


@app.callback()
def _prepare_state_folders(
    debug: bool = typer.Option(
        False,
        "--debug",
        envvar="PERENNIAL_DEBUG",
        help="Show Prefect's run logs and the traceback of a refused or failed command.",
    ),
) -> None:
    from flows.terminal import set_quiet_defaults

    # Before any command imports prefect or mlflow: they read these at import.
    set_quiet_defaults(os.environ, debug)
    # Prefect creates its home with a plain mkdir, without parents: on a fresh clone the
    # default `PREFECT_HOME=.perennial/prefect` has no parent yet, and the ephemeral server
    # then fails to open its database. Runs before every command.
    prefect_home = os.environ.get("PREFECT_HOME")
    if prefect_home:
        from tasks.core.private_state import private_folder

        private_folder(Path(prefect_home).expanduser())  # it holds Prefect's database


ConfigOption = typer.Option(
    None, "--config", "-c", help="Dataset YAML (default: configs/flights.yaml, the demo)."
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")
