"""`perennial`: the command line. A thin layer over the flows; heavy imports happen inside
commands so that `--help` is instant.

Exit codes: 0 success, 1 rejected input or failed gate (reason printed), 2 usage error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

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


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _config(path: Path | None) -> Any:
    from tasks.core.config import load_config
    from tasks.core.config_section import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        from flows.terminal import one_line

        _fail(one_line(str(exc)), 2)


def _trainable(config: Any) -> Any:
    """The config, once its `training.device` is one this machine can train on: a GPU asked for
    and missing is refused here, in one line, before any flow starts."""
    from tasks.learn.device import training_device

    training_device(config)
    return config


def _dataset(config: Any) -> str:
    """The name flows take for the loaded config: its YAML's stem, with PERENNIAL_CONFIGS_DIR
    pointing at its folder (flows take names, never paths, so a UI run cannot name a file)."""
    from tasks.core.config import DATASET_NAME, DATASET_NAME_RULE

    path = Path(config.config_path)
    if not DATASET_NAME.fullmatch(path.stem):
        _fail(f"{path}: name the file <dataset>.yaml: {DATASET_NAME_RULE}", 2)
    os.environ["PERENNIAL_CONFIGS_DIR"] = str(path.parent)
    return path.stem


def _emit(payload: dict[str, Any], as_json: bool, human: str) -> None:
    if as_json:
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        typer.echo(human)


def _rejections() -> tuple[type[BaseException], ...]:
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
    )


def _checked_batch(config: Any, batch: str, *, many: bool = False) -> str:
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
        _fail(f"rejected: {exc}")
    return batch


def _run(flow: Any, *, heartbeats: bool = False, **parameters: Any) -> Any:
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
        _fail(f"error: {exc}")
    if server is None and not local_server.api_url_configured():
        bind_ephemeral_server()
    elif server is not None and server["new"]:  # on stderr: --json output stays parseable
        typer.echo(
            f"started the local Prefect server at {server['url']} (pid {server['pid']}), "
            "reused by later commands: `perennial server` shows it, `... stop` stops it",
            err=True,
        )
    rejected = _rejections()
    try:
        with local_server.connected(server), quiet_console(), _heartbeats(heartbeats):
            return flow(**parameters)
    except rejected as exc:
        _fail(refusal_line(exc))


@contextlib.contextmanager
def _heartbeats(wanted: bool) -> Iterator[None]:
    if wanted:
        yield
        return
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        yield


@app.command()
def ingest(
    batch: str | None = typer.Option(None, "--batch", "-b", help="Batch id, e.g. 2013-01."),
    source: Path | None = typer.Option(
        None, "--source", help="CSV/Parquet file holding the batch (default: the config's source)."
    ),
    validate: bool = typer.Option(True, help="Run the validation gate after landing."),
    batches: str | None = typer.Option(
        None,
        "--batches",
        help="Land a range or list of batches from the config's source, e.g. 2012-01..2012-12.",
    ),
    folder: Path | None = typer.Option(
        None,
        "--folder",
        help="Land every file of this folder named as a batch (e.g. 2012-01.csv, or as "
        "source.path_template names it).",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Land a batch (immutable, idempotent) and run the validation gate on it; or many batches
    (--batches A..B, --folder DIR) in one run, exit 1 if any was refused or quarantined."""
    if sum(option is not None for option in (batch, batches, folder)) != 1:
        _fail("give one of --batch B, --batches A..B or --folder DIR", 2)
    if source is not None and batch is None:
        _fail("--source names the file of one --batch; --folder lands a folder of files", 2)
    cfg = _config(config)
    if batch is None:
        if batches is not None:
            _checked_batch(cfg, batches, many=True)
        _ingest_many(cfg, batches or "", folder, validate, as_json)
        return
    _checked_batch(cfg, batch)  # before the flow's import: a refusal starts nothing
    from flows.ingestion import ingestion

    result = _run(
        ingestion,
        batch=batch,
        source=str(source) if source else None,
        validate=validate,
        dataset=_dataset(cfg),
    )
    _emit(result, as_json, _gate_line(result))
    if result.get("gate") == "failed":
        raise typer.Exit(1)


@app.command()
def validate(
    batch: str | None = typer.Option(None, "--batch", "-b", help="Batch id of a landed batch."),
    profile: str | None = typer.Option(
        None,
        "--profile",
        help="Draft the suite from these landed batches (e.g. 2013-01..2013-03) "
        "instead of validating; review the JSON it writes like code.",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Run the validation gate on a landed batch (quarantines it if it fails)."""
    cfg = _config(config)
    if profile:
        from tasks.core.batches import expand_range
        from tasks.core.storage import open_storage
        from tasks.data.filecheck import FileCheckError
        from tasks.data.suite import profile_reference

        _checked_batch(cfg, profile, many=True)
        refused: tuple[type[BaseException], ...] = (
            FileNotFoundError,
            FileCheckError,
            *_rejections(),
        )
        try:
            written, warning = profile_reference(
                open_storage(cfg.home), cfg, expand_range(profile, cfg.time)
            )
        except refused as exc:
            _fail(f"profile refused: {exc}")
        typer.echo(f"suite drafted: {written}")
        if warning:
            typer.secho(warning, fg=typer.colors.YELLOW, err=True)
        return
    if not batch:
        _fail("give --batch B (or --profile B1..B2)", 2)
    _checked_batch(cfg, batch)
    from flows.ingestion import ingestion

    result = _run(
        ingestion,
        batch=batch,
        source=None,
        validate=True,
        land=False,
        dataset=_dataset(cfg),
    )
    _emit(result, as_json, _gate_line(result))
    if result.get("gate") == "failed":
        raise typer.Exit(1)


def _ingest_many(
    cfg: Any, batches: str, folder: Path | None, validate: bool, as_json: bool
) -> None:
    """`ingest --batches` / `--folder`: one flow run, a line per batch, a summary at the end."""
    from flows.ingestion import ingest_batches

    result = _run(
        ingest_batches,
        batches=batches,
        folder=str(folder.resolve()) if folder else None,
        gate=validate,
        dataset=_dataset(cfg),
    )
    lines = [
        f"{result['dataset']}: {len(result['batches'])} batches, {result['landed']} landed, "
        f"{result['unchanged']} unchanged, {result['passed']} passed the gate"
        + (f", {len(result['skipped_files'])} files skipped" if result["skipped_files"] else "")
    ]
    lines += [f"  QUARANTINED {b}: {why}" for b, why in result["quarantined"].items()]
    lines += [f"  REFUSED {b}: {why}" for b, why in result["refused"].items()]
    _emit(result, as_json, "\n".join(lines))
    if not result["ok"]:
        raise typer.Exit(1)


def _gate_line(result: dict[str, Any]) -> str:
    """A compact table: one line per failed (blocking) and warned check, blocking first."""
    headline = f": {result['headline']}" if result.get("headline") else ""
    lines = [
        f"batch {result['batch']}: landing {result['landing']}, gate {result['gate']}{headline}"
    ]
    for label, key in (("FAILED ", "failures"), ("WARNING", "warnings")):
        for entry in result.get(key, []):
            lines.append(f"  {label} {entry}")
    if result.get("reason_key"):
        lines.append(f"  quarantined; reason in {result['reason_key']}")
    return "\n".join(lines)


@app.command()
def train(
    batches: str = typer.Option(
        "",
        "--batches",
        help="Batches to use, e.g. 2013-01..2013-06 (newest = holdout); "
        "default: every landed batch.",
    ),
    trials: int | None = typer.Option(
        None, "--trials", min=1, max=10_000, help="Search trials (default: config)."
    ),
    reason: str = typer.Option(
        "manual run from the CLI", "--reason", help="Recorded with the run."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Train a challenger and promote it if it beats the champion."""
    from flows.training import training

    cfg = _trainable(_config(config))
    if batches:
        _checked_batch(cfg, batches, many=True)
    result = _run(
        training,
        heartbeats=True,
        batches=batches,
        trials=trials,
        reason=reason,
        dataset=_dataset(cfg),
    )
    verdict = "promoted to champion" if result["promoted"] else "not promoted"
    # An identical rerun reports the version found; its numbers may be missing (e.g. it was
    # registered by a concurrent run that had not recorded its decision yet).
    challenger, champion = result.get("challenger"), result.get("champion")
    numbers = f"AUC {challenger['roc_auc']:.4f}" if challenger else "AUC not recorded"
    if champion:
        numbers += f" vs champion {champion['roc_auc']:.4f}"
    seen = result.get("trained_on") or []
    trained = f"; trained on {seen[0]}..{seen[-1]}" if seen else ""
    human = (
        f"{result['model']} v{result['version']} {verdict} "
        f"(holdout {result['holdout']}: {numbers}{trained})\n"
        + "\n".join(f"  - {r}" for r in result["reasons"])
    )
    _emit(result, as_json, human)


@app.command()
def search(
    batches: str = typer.Option(
        "",
        "--batches",
        help="Batches, as train takes them, e.g. 2013-01..2013-12; default: every landed batch.",
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        min=1,
        max=10_000,
        help="Finished trials the study should hold (default: config).",
    ),
    first_worker: int | None = typer.Option(
        None,
        "--first-worker",
        min=0,
        help="Sampler seed offset of this process (default: config hpo.first_worker_index); "
        "give each process that joins a study its own: 0, 2, 4, ... with two workers each.",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Run search trials in the study `train` uses for these batches; train and register nothing.

    With a shared PostgreSQL Optuna storage (PERENNIAL_OPTUNA_STORAGE), a second machine joins
    a running search; the next `train` on the same batches runs only the trials still missing."""
    from flows.search import search as search_flow

    cfg = _trainable(_config(config))
    if batches:
        _checked_batch(cfg, batches, many=True)
    result = _run(
        search_flow,
        heartbeats=True,
        batches=batches,
        trials=trials,
        dataset=_dataset(cfg),
        first_worker_index=first_worker,
    )
    human = (
        f"study {result['study']}: {result['trials_total']} finished trial(s), "
        f"{result['trials_run']} run here ({result['trials_pruned']} pruned in all), "
        f"sampler seed(s) {', '.join(map(str, result['sampler_seeds']))}; "
        f"best #{result['best_trial']} validation {result['best_value']:.4f}\n"
        f"  next: perennial train --batches {batches or '<the same batches>'}"
        + (f" --trials {trials}" if trials else "")
        + " runs only the trials still missing"
    )
    _emit(result, as_json, human)


@app.command()
def promote(
    version: str = typer.Option(..., "--version", help="Registered version to make champion."),
    reason: str = typer.Option("", "--reason", help="Why (recorded on the version)."),
    force: bool = typer.Option(False, "--force", help="Override the policy (needs --reason)."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Make a version champion: the policy is checked on the newest validated batch first."""
    if force and not reason.strip():
        _fail("--force needs a --reason: overriding the policy must be explained", 2)
    from flows.promotion import promote as promote_flow

    cfg = _config(config)
    result = _run(
        promote_flow,
        version=version,
        reason=reason or "manual promotion",
        force=force,
        dataset=_dataset(cfg),
    )
    human = (
        f"{result['model']}: champion is now v{result['champion']} "
        f"(was {'v' + result['previous'] if result['previous'] else 'none'})"
        + (" — FORCED past the policy" if result["forced"] else "")
        + "\n"
        + "\n".join(f"  - {c}" for c in result["checks"])
    )
    _emit(result, as_json, human)


@app.command()
def rollback(
    reason: str = typer.Option("manual rollback", "--reason", help="Why (recorded)."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Point the champion back to the version it replaced."""
    from flows.promotion import rollback_champion

    cfg = _config(config)
    result = _run(rollback_champion, reason=reason, dataset=_dataset(cfg))
    _emit(
        result,
        as_json,
        f"{result['model']}: champion back to v{result['champion']} (v{result['demoted']} demoted)",
    )


@app.command()
def predict(
    batch: str = typer.Option(..., "--batch", "-b", help="Batch to score."),
    explain: bool = typer.Option(
        False, "--explain", help="Add each row's top three reasons (SHAP values, log-odds)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Score a batch with the champion (and the challenger, in shadow) after the gate."""
    from flows.inference import inference

    cfg = _config(config)
    result = _run(
        inference, batch=_checked_batch(cfg, batch), dataset=_dataset(cfg), explain=explain
    )
    lines = [f"batch {batch}: {result['rows']} rows scored -> {result['key']}"]
    if explain:
        lines.append("  with the champion's top three reasons per row (reason_1..3 columns)")
    for alias in ("champion", "challenger"):
        if alias in result:
            lines.append(
                f"  {alias} v{result[alias]['version']}: mean score "
                f"{result[alias]['mean_score']:.4f}"
            )
    _emit(result, as_json, "\n".join(lines))


@app.command()
def monitor(
    batch: str = typer.Option(..., "--batch", "-b", help="Batch to check, e.g. 2013-07."),
    live: bool = typer.Option(
        False, "--live", help="Check the live traffic `perennial serve` sampled in this period."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Measure a batch's drift against the champion's training data (PSI per feature, scores,
    labels); on alert emit `perennial.drift.detected`. Drift exits 0: it is information.
    With --live, the batch is the live traffic served in that period (serve.live_sample_rate)."""
    from flows.monitoring import live_monitoring, monitoring
    from tasks.watch.live import LiveError
    from tasks.watch.profile import DriftError

    cfg = _config(config)
    try:
        result = _run(
            live_monitoring if live else monitoring,
            batch=_checked_batch(cfg, batch),
            dataset=_dataset(cfg),
        )
    except (DriftError, LiveError) as exc:  # e.g. a champion trained before profiles existed
        _fail(f"rejected: {exc}")
    lines = [
        f"batch {batch} vs champion v{result['reference_version']}: {result['status'].upper()} "
        f"(max PSI {result['max_psi']:.3f})",
        *(f"  - {reason}" for reason in result["reasons"]),
    ]
    if live:
        lines.insert(0, f"live traffic sampled by perennial serve: {result['rows']:,} rows")
    label = result.get("label")
    if label:
        lines.append(
            f"  label positive rate {label['batch_rate']:.3f} vs {label['reference_rate']:.3f} "
            f"in the reference ({label['shift']:+.3f})"
        )
    estimated = result.get("estimated")
    if estimated:
        real = estimated["realised_auc"]
        from tasks.watch.estimate import trust_text

        lines.append(
            f"  champion AUC estimated before labels (CBPE): {estimated['estimated_auc']:.4f}"
            + trust_text(estimated)
            + (f"; real AUC {real:.4f} ({estimated['error']:+.4f})" if real is not None else "")
        )
    if result["event_emitted"]:
        lines.append("  event perennial.drift.detected emitted (a served deployment retrains)")
    shadow = result.get("shadow")
    if shadow:
        lines.append(
            f"shadow scoring on {shadow['rows']:,} labelled rows: challenger "
            f"v{shadow['challenger']['version']} AUC {shadow['challenger']['roc_auc']:.4f} vs "
            f"champion v{shadow['champion']['version']} {shadow['champion']['roc_auc']:.4f} "
            f"({shadow['gain']['roc_auc']:+.4f})"
        )
    lines.extend(_arms_lines(result.get("arms")))
    if result.get("report"):
        lines.append(f"report over time: {result['report']['location']}")
    _emit(result, as_json, "\n".join(lines))


def _arms_lines(arms: dict[str, Any] | None) -> list[str]:
    """The A/B arms of the batch's live traffic, one line each (the policy decides promotion)."""
    if not arms:
        return []
    lines = [f"A/B arms on {arms['rows']:,} labelled live rows:"]
    for alias in ("champion", "challenger"):
        if arms[alias]:
            versions = ", ".join(f"v{v}" for v in arms[alias]["versions"])
            lines.append(
                f"  {alias} {versions}: {arms[alias]['rows']:,} rows, "
                f"AUC {arms[alias]['roc_auc']:.4f}"
            )
    return lines


def _registry_status(cfg: Any) -> dict[str, Any]:
    """Champion, challenger, decisions and costs from the registry: a SQLite registry is read
    with sqlite3 (status answers in well under 2 s; `import mlflow` alone takes 3-6 s), any
    other back end through MLflow's client."""
    from tasks.registry.reader import Unreadable, status_snapshot

    try:
        found = status_snapshot(cfg.tracking_uri, cfg.model_name, cfg.dataset)
    except Unreadable:
        found = _registry_status_by_mlflow(cfg)
    for alias in ("champion", "challenger"):
        if found[alias] is not None:
            found[alias] = _status_entry(found[alias])
    return found


def _status_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """What `status` shows of an aliased version, from either registry read."""
    from tasks.registry.lineage import batches_seen, judged_on

    seen = batches_seen(entry["tags"])
    return {
        "version": entry["version"],
        "run_id": entry["run_id"],
        "metrics": entry["metrics"],
        "batches": entry["tags"].get("perennial.batches", ""),
        "trained_on": seen,
        "judged_on": judged_on(entry["tags"]),
    }


def _registry_status_by_mlflow(cfg: Any) -> dict[str, Any]:
    from tasks.registry.champion import recent_decisions
    from tasks.registry.client import CHALLENGER, CHAMPION, version_by_alias
    from tasks.registry.cost import recent_costs

    found: dict[str, Any] = {}
    for alias in (CHAMPION, CHALLENGER):
        info = version_by_alias(cfg, alias)
        found[alias] = None if info is None else vars(info)
    found["decisions"] = recent_decisions(cfg)
    found["costs"] = recent_costs(cfg)
    return found


@app.command()
def status(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Show the champion and challenger, their holdout metrics, and the latest decisions."""
    cfg = _config(config)
    found = _registry_status(cfg)
    payload: dict[str, Any] = {"model": cfg.model_name}
    payload.update((key, found[key]) for key in ("champion", "challenger", "decisions"))
    lines = [f"model {cfg.model_name}"]
    for alias in ("champion", "challenger"):
        entry = payload[alias]
        if entry is None:
            lines.append(f"  {alias}: none")
        else:
            auc = entry["metrics"].get("holdout_roc_auc")
            lines.append(
                f"  {alias}: v{entry['version']} holdout AUC {auc:.4f}"
                if auc is not None
                else f"  {alias}: v{entry['version']}"
            )
            seen = entry["trained_on"]
            if seen:
                lines.append(
                    f"    trained on {seen[0]}..{seen[-1]} ({len(seen)} batches), judged on "
                    f"{entry['judged_on']}"
                    + (" (then refit on it)" if entry["judged_on"] in seen else " (unseen)")
                )
    for item in payload["decisions"]:
        lines.append(f"  v{item['version']} {item['decision']}: {'; '.join(item['reasons'])}")
    payload["costs"] = found["costs"]
    if payload["costs"]:
        lines.append(f"  cost of the last training runs (prices of {cfg.cost.prices_as_of}):")
    for run in payload["costs"]:
        version = f"v{run['version']}" if run.get("version") else run["run_id"][:8]
        lines.append(
            f"    {version}: {run.get('wall_seconds', 0):.1f} s wall, "
            f"{run.get('cpu_seconds', 0):.1f} CPU s, peak {run.get('peak_rss_mb', 0):,.0f} MB, "
            f"estimated ${run.get('usd', 0):.6f}"
        )
    _emit(payload, as_json, "\n".join(lines))


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
        _fail(f"unknown action {action!r}: use `perennial server status`, `start` or `stop`", 2)
    if action == "start":
        try:
            started = local_server.ensure()
        except local_server.LocalServerError as exc:
            _fail(str(exc))
        if started is None:
            _fail(
                "no shared local server is used here: PREFECT_API_URL names a server or "
                f"{local_server.MODE_VARIABLE}=ephemeral; unset it to use one"
            )
        verb = "started" if started["new"] else "already running:"
        _emit(
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
        _emit({"stopped": stopped}, as_json, human)
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
    _emit(found, as_json, human)


@app.command()
def demo(
    trials: int | None = typer.Option(
        None, "--trials", min=1, max=10_000, help="Search trials per retrain."
    ),
    first: str = typer.Option("2013-01..2013-03", help="Batches that train the first champion."),
    last: str = typer.Option("2013-12", help="Last month to replay."),
    config: Path | None = ConfigOption,
) -> None:
    """Replay the year: land and train on the first months, then month by month land, validate,
    score with the champion and retrain, printing one row a month."""
    from flows.demo import demo as demo_flow

    cfg = _trainable(_config(config))
    _checked_batch(cfg, first, many=True)
    _checked_batch(cfg, last)
    _run(demo_flow, heartbeats=True, trials=trials, first=first, last=last, dataset=_dataset(cfg))


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind (loopback only by default; any other needs PERENNIAL_SERVE_TOKEN).",
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    config: Path | None = ConfigOption,
) -> None:
    """Serve the champion over HTTP (POST /predict, /health, /version, /metrics); the challenger
    scores `serve.challenger_share` of requests. A moved alias is loaded, warmed up and swapped
    in without dropping a request."""
    from flows.serve import run

    run(_config(config), host, port)


@app.command()
def init(
    source: Path = typer.Option(..., "--from", help="CSV/Parquet file of your data (a sample)."),
    name: str | None = typer.Option(
        None, "--name", help="Dataset name (default: the file's name)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the draft (default: configs/NAME.yaml)."
    ),
) -> None:
    """Draft a dataset YAML from a sample of your file: columns and types, time column and
    period, candidate targets and likely leaks. Review it and set the target; never overwrites."""
    from tasks.data.draft_config import DraftError, write_draft

    try:
        written = write_draft(source, name, out)
    except DraftError as exc:
        _fail(f"refused: {exc}")
    typer.echo(
        f"drafted {written}: review it, set time.timezone and the target, then "
        f"`perennial ingest --config {written} --batches FIRST..LAST --no-validate` and "
        "`perennial validate --profile FIRST..LAST`"
    )


@app.command()
def report(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Also copy the page here (default: only reports/<model>.html)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Write one self-contained HTML page of the model (metrics per batch with champion changes,
    decisions, drift heat map, quarantines, cost per run) that opens offline; print its path."""
    from flows.report import report as report_flow

    cfg = _config(config)
    result = _run(report_flow, dataset=_dataset(cfg))
    if out is not None:
        from tasks.core.storage import open_storage

        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(open_storage(cfg.home).read_bytes(result["key"]))
        except OSError as exc:
            _fail(
                f"refused: cannot write the report to {out}: {exc.strerror}; choose another --out"
            )
        result["path"], result["location"] = str(out.resolve()), out.resolve().as_uri()
    human = (
        f"report of {result['model']}: {result['batches']} batches, {result['decisions']} "
        f"decisions, {result['quarantines']} quarantined, {result['costs']} runs costed\n"
        + result["path"]
    )
    _emit(result, as_json, human)


@app.command()
def replay(
    batches: str = typer.Option(
        "",
        "--batches",
        help="History to replay, e.g. 2013-01..2013-12 (default: every landed batch).",
    ),
    seeds: int = typer.Option(3, "--seeds", min=1, max=20, help="Seeds per policy."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Replay the dataset's history under the configured retrain policy and simple alternatives
    (every batch, never, every 3 batches): realized AUC of the model in production per batch,
    retrains, promotions, alerts. The report page draws it."""
    from flows.replay import replay as replay_flow

    cfg = _config(config)
    if batches:
        _checked_batch(cfg, batches, many=True)
    result = _run(replay_flow, heartbeats=True, batches=batches, seeds=seeds, dataset=_dataset(cfg))
    lines = [f"replay of {result['dataset']} over {len(result['batches'])} batches, {seeds} seeds:"]
    for name, summary in result["policies"].items():
        low, high = summary["interval"]
        lines.append(
            f"  {name:<12} realized AUC {summary['mean_realized_auc']:.4f} [{low:.4f}, {high:.4f}]"
            f", {summary['retrains']:g} retrains, {summary['promotions']:g} promotions, "
            f"{summary['alerts']:g} alerts"
        )
    _emit(result, as_json, "\n".join(lines))


def main() -> None:  # pragma: no cover - the console script `perennial`
    from flows import terminal
    from flows.terminal import crash_line, refusal_line

    terminal.KEEP_QUIET_UNTIL_EXIT = True
    try:
        sys.exit(app())
    except Exception as exc:  # refusals outside a flow run, and crashes: one line, exit 1
        rejected = isinstance(exc, _rejections())
        typer.secho(refusal_line(exc) if rejected else crash_line(exc), fg="red", err=True)
        sys.exit(1)
