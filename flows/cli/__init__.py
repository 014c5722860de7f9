"""`perennial`: the command line. A thin layer over the flows; heavy imports happen inside
commands so that `--help` is instant.

The commands live in modules by what they act on (`data`, `training`, `registry`, `scoring`,
`watch`, `server`, `privacy`), each registering on the one Typer `app` (`flows/cli/app.py`) and
sharing `flows/cli/runner.py`; they import those two, never each other.

Exit codes: 0 success, 1 rejected input or failed gate (reason printed), 2 usage error.
"""

from __future__ import annotations

import sys

import typer

# A command module registers its commands on `app` when it is imported (hence the noqa).
from flows.cli import (  # noqa: F401
    data,
    privacy,
    registry,
    runner,
    scoring,
    server,
    training,
    watch,
)
from flows.cli.app import app

__all__ = ["app", "main"]

# `perennial --help` lists the commands in this order (a first session's), not by module.
HELP_ORDER = (
    "ingest",
    "validate",
    "train",
    "search",
    "promote",
    "rollback",
    "predict",
    "monitor",
    "status",
    "server",
    "demo",
    "serve",
    "init",
    "report",
    "replay",
    "forget",
)


def _help_position(command: typer.models.CommandInfo) -> int:
    name = command.name or (command.callback.__name__ if command.callback else "")
    return HELP_ORDER.index(name) if name in HELP_ORDER else len(HELP_ORDER)


app.registered_commands.sort(key=_help_position)


def main() -> None:  # pragma: no cover - the console script `perennial`
    from flows import terminal
    from flows.terminal import crash_line, refusal_line

    terminal.KEEP_QUIET_UNTIL_EXIT = True
    try:
        sys.exit(app())
    except Exception as exc:  # refusals outside a flow run, and crashes: one line, exit 1
        rejected = isinstance(exc, runner.rejections())
        typer.secho(refusal_line(exc) if rejected else crash_line(exc), fg="red", err=True)
        sys.exit(1)
