"""What every command shares: reading `--config`, checking batch ids before any flow starts,
running a flow in this process, and printing its result (a line for people, `--json` for
machines). Command modules call these as `runner.<name>`, so a test replaces `runner.run` once
for all of them.

Exit codes: 0 success, 1 rejected input or failed gate (reason printed), 2 usage error.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypedDict, TypeVar

import typer

if TYPE_CHECKING:
    from prefect import Flow

    from tasks.core.config import PerennialConfig

Result = TypeVar("Result")


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def read_config(path: Path | None) -> PerennialConfig:
    from tasks.core.config import load_config
    from tasks.core.config_section import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        from flows.terminal import one_line

        fail(one_line(str(exc)), 2)


def trainable(path: Path | None, batches: str | None = None) -> PerennialConfig:
    """The config of a command that trains, once its `training.device` is one this machine can
    train on and `batches` (a list or range, when given) belong to its period: refused here, in
    one line, before any flow starts."""
    from tasks.learn.device import training_device

    config = read_config(path)
    training_device(config)
    if batches:
        checked_batch(config, batches, many=True)
    return config


class DatasetParameters(TypedDict):
    dataset: str
    configs_dir: str


def dataset_parameters(config: PerennialConfig) -> DatasetParameters:
    """The parameters that name the loaded config to a flow: its YAML's stem and folder. Flows
    take a name (and a folder, which a served run may not choose), never a file path; the flow,
    run in this process, reuses the parse of `read_config` (`tasks/core/config.py`)."""
    from tasks.core.config import DATASET_NAME, DATASET_NAME_RULE

    path = config.config_path  # set by load_config
    if path is None or not DATASET_NAME.fullmatch(path.stem):
        fail(f"{path}: name the file <dataset>.yaml: {DATASET_NAME_RULE}", 2)
    return DatasetParameters(dataset=path.stem, configs_dir=str(path.parent))


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave, for a flow's parameters: one left out (None) takes the flow's
    default, so that each default has one home, the flow's signature."""
    return {name: value for name, value in options.items() if value is not None}


def emit(result: Any, as_json: bool, human: str) -> None:
    """Print `human`, or with `--json` the result's JSON (`tasks/core/results.py`)."""
    if as_json:
        from tasks.core.results import jsonable

        typer.echo(json.dumps(jsonable(result), indent=2, default=str))
    else:
        typer.echo(human)


def rejections() -> tuple[type[BaseException], ...]:
    """Errors that mean 'your input was rejected' (exit 1) rather than a crash."""
    from tasks.core.batches import BatchIdError
    from tasks.core.config_section import ConfigError
    from tasks.core.expression import ExpressionError
    from tasks.core.storage import ImmutableKeyError
    from tasks.data.expectations import NoSuiteError
    from tasks.data.features import SplitError
    from tasks.data.filecheck import FileCheckError
    from tasks.data.raw_files import IngestError
    from tasks.data.validate import GateRefusedError
    from tasks.learn.study import StudyDirectionError
    from tasks.registry.client import RegistryError
    from tasks.registry.model_store import ModelIntegrityError
    from tasks.registry.promotion import PolicyRefusedError
    from tasks.watch.profile import DriftError

    return (
        ConfigError,
        ExpressionError,
        GateRefusedError,
        BatchIdError,
        SplitError,
        IngestError,
        ImmutableKeyError,
        RegistryError,
        ModelIntegrityError,
        PolicyRefusedError,
        NoSuiteError,
        FileCheckError,
        DriftError,
        StudyDirectionError,
    )


def checked_batch(config: PerennialConfig, batch: str, *, many: bool = False) -> str:
    """A batch id (or, with `many`, a list `a,b` or range `a..b`) checked against the dataset's
    period before any flow starts: a bad id is refused in one line, with no Prefect server
    started and nothing in storage read, written or moved."""
    from tasks.core.batches import BatchIdError, check_batch, expand_range

    try:
        if many:
            expand_range(batch, config.time)
        else:
            check_batch(batch, config.time)
    except BatchIdError as exc:
        fail(f"rejected: {exc}")
    return batch


def run(flow: Flow[..., Result], *, heartbeats: bool = False, **parameters: Any) -> Result:
    """Run a flow in this process; rejected input becomes exit code 1 with the reason, on one
    line (Prefect's failed-run tracebacks are kept off the terminal, not out of the UI).

    The flow reports to the shared local Prefect server (started on first use, then reused),
    unless PREFECT_API_URL names a server or PERENNIAL_PREFECT=ephemeral: then to Prefect's
    temporary server, bound to this process so that it dies with it.

    Flow-run heartbeats (which let Prefect tell a crashed run from a running one) are sent only
    with `heartbeats`, for the long commands: Prefect's heartbeat thread sleeps in whole seconds
    and is joined when the run ends, which cost a command of a few seconds 0.5-1 s. A short
    command runs in the user's terminal, where its end or its crash is seen."""
    from flows.supervision import local_server
    from flows.supervision.ephemeral_server import bind_ephemeral_server
    from flows.terminal import quiet_console, refusal_line

    try:
        server = local_server.ensure()
    except local_server.LocalServerError as exc:
        fail(f"error: {exc}")
    if server is None and not local_server.api_url_configured():
        bind_ephemeral_server()
    elif server is not None and server["new"]:  # on stderr: --json output stays parseable
        typer.echo(
            f"started the local Prefect server at {server['url']} (pid {server['pid']}), "
            "reused by later commands: `perennial server` shows it, `... stop` stops it",
            err=True,
        )
    rejected = rejections()
    try:
        with local_server.connected(server), quiet_console(), _heartbeats(heartbeats):
            return flow(**parameters)
    except rejected as exc:
        fail(refusal_line(exc))


@contextlib.contextmanager
def _heartbeats(wanted: bool) -> Iterator[None]:
    if wanted:
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield
