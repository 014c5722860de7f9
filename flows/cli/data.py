"""`perennial ingest`, `validate` and `init`: landing batches, the validation gate, and a first
draft of a new dataset's YAML."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app

if TYPE_CHECKING:
    from tasks.core.config import PerennialConfig
    from tasks.data.verdict import BatchSummary


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
        runner.fail("give one of --batch B, --batches A..B or --folder DIR", 2)
    if source is not None and batch is None:
        runner.fail("--source names the file of one --batch; --folder lands a folder of files", 2)
    cfg = runner.read_config(config)
    if batch is None:
        if batches is not None:
            runner.checked_batch(cfg, batches, many=True)
        _ingest_many(cfg, batches or "", folder, validate, as_json)
        return
    runner.checked_batch(cfg, batch)  # before the flow's import: a refusal starts nothing
    from flows.ingestion import ingestion

    result = runner.run(
        ingestion,
        batch=batch,
        source=str(source) if source else None,
        validate=validate,
        **runner.dataset_parameters(cfg),
    )
    runner.emit(result, as_json, _gate_line(result))
    if result.gate == "failed":
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
    cfg = runner.read_config(config)
    if profile:
        from tasks.core.batches import expand_range
        from tasks.core.storage import open_storage
        from tasks.data.filecheck import FileCheckError
        from tasks.data.suite import profile_reference

        runner.checked_batch(cfg, profile, many=True)
        refused: tuple[type[BaseException], ...] = (
            FileNotFoundError,
            FileCheckError,
            *runner.rejections(),
        )
        try:
            written, warning = profile_reference(
                open_storage(cfg.home), cfg, expand_range(profile, cfg.time)
            )
        except refused as exc:
            runner.fail(f"profile refused: {exc}")
        typer.echo(f"suite drafted: {written}")
        if warning:
            typer.secho(warning, fg=typer.colors.YELLOW, err=True)
        return
    if not batch:
        runner.fail("give --batch B (or --profile B1..B2)", 2)
    runner.checked_batch(cfg, batch)
    from flows.ingestion import ingestion

    result = runner.run(
        ingestion,
        batch=batch,
        source=None,
        validate=True,
        land=False,
        **runner.dataset_parameters(cfg),
    )
    runner.emit(result, as_json, _gate_line(result))
    if result.gate == "failed":
        raise typer.Exit(1)


def _ingest_many(
    cfg: PerennialConfig, batches: str, folder: Path | None, validate: bool, as_json: bool
) -> None:
    """`ingest --batches` / `--folder`: one flow run, a line per batch, a summary at the end."""
    from flows.ingestion import ingest_batches

    result = runner.run(
        ingest_batches,
        batches=batches,
        folder=str(folder.resolve()) if folder else None,
        gate=validate,
        **runner.dataset_parameters(cfg),
    )
    skipped = result.skipped_files
    lines = [
        f"{result.dataset}: {len(result.batches)} batches, {result.landed} landed, "
        f"{result.unchanged} unchanged, {result.passed} passed the gate"
        + (f", {len(skipped)} files skipped" if skipped else "")
    ]
    lines += [f"  QUARANTINED {b}: {why}" for b, why in result.quarantined.items()]
    lines += [f"  REFUSED {b}: {why}" for b, why in result.refused.items()]
    runner.emit(result, as_json, "\n".join(lines))
    if not result.ok:
        raise typer.Exit(1)


def _gate_line(result: BatchSummary) -> str:
    """A compact table: one line per failed (blocking) and warned check, blocking first."""
    from tasks.data.verdict import GatedBatch

    gated = result if isinstance(result, GatedBatch) else None
    headline = f": {gated.headline}" if gated and gated.headline else ""
    lines = [f"batch {result.batch}: landing {result.landing}, gate {result.gate}{headline}"]
    if gated:
        lines += [f"  FAILED  {entry}" for entry in gated.failures]
        lines += [f"  WARNING {entry}" for entry in gated.warnings]
        if gated.reason_key:
            lines.append(f"  quarantined; reason in {gated.reason_key}")
    return "\n".join(lines)


@app.command()
def init(
    source: Path = typer.Option(..., "--from", help="CSV/Parquet file of your data (a sample)."),
    name: str | None = typer.Option(
        None, "--name", help="Dataset name (default: the file's name)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Where to write the draft (default: configs/NAME.yaml)."
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        help="Column to predict: the draft proposes its task (binary, multiclass, regression).",
    ),
) -> None:
    """Draft a dataset YAML from a sample of your file: columns and types, time column and
    period, candidate targets and likely leaks; with --target, the target and its task from the
    column's values. Review it (and set the target if not given); never overwrites."""
    from tasks.data.draft_config import DraftError, write_draft

    try:
        written = write_draft(source, name, out, target)
    except DraftError as exc:
        runner.fail(f"refused: {exc}")
    what = "the target's task" if target else "the target"
    typer.echo(
        f"drafted {written}: review it, set time.timezone and {what}, then "
        f"`perennial ingest --config {written} --batches FIRST..LAST --no-validate` and "
        "`perennial validate --profile FIRST..LAST`"
    )
