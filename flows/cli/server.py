"""`perennial server`: the shared local Prefect server that commands start on first use."""

from __future__ import annotations

import typer

from flows.cli import runner
from flows.cli.app import JsonOption, app


@app.command()
def server(
    action: str = typer.Argument("status", help="status (default), start or stop."),
    as_json: bool = JsonOption,
) -> None:
    """The shared local Prefect server that commands start on first use and reuse: show it,
    start it ahead of the first command, or stop it (a later command starts it again).
    PERENNIAL_PREFECT=ephemeral does without it."""
    from flows.supervision import local_server

    if action not in ("status", "start", "stop"):
        runner.fail(
            f"unknown action {action!r}: use `perennial server status`, `start` or `stop`", 2
        )
    if action == "start":
        try:
            started = local_server.ensure()
        except local_server.LocalServerError as exc:
            runner.fail(str(exc))
        if started is None:
            runner.fail(
                "no shared local server is used here: PREFECT_API_URL names a server or "
                f"{local_server.MODE_VARIABLE}=ephemeral; unset it to use one"
            )
        verb = "started" if started["new"] else "already running:"
        runner.emit(
            started,
            as_json,
            f"{verb} the local Prefect server at {started['url']} (pid {started['pid']})",
        )
        return
    if action == "stop":
        stopped = local_server.stop_server()
        human = (
            f"stopped the local Prefect server (pid {stopped['pid']})"
            if stopped
            else "no local Prefect server was running"
        )
        runner.emit({"stopped": stopped}, as_json, human)
        return
    found = local_server.server_status()
    human = (
        f"local Prefect server running at {found['url']} (pid {found['pid']}); UI at "
        f"{found['url'].removesuffix('/api')}, sign in with {found['home']}/"
        f"{local_server.SECRET}; log {found['log']}"
        if found["running"]
        else f"no local Prefect server running (PREFECT_HOME {found['home']}): the next "
        "command that runs a flow starts one"
    )
    runner.emit(found, as_json, human)
