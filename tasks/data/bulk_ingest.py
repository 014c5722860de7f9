"""Many batches in one run: a range of periods (`ingest --batches 2012-01..2012-12`, each read
from the dataset's source) or every file of a folder named as a batch (`ingest --folder DIR`).

Each batch is landed and gated on its own: a refused or quarantined batch does not stop the
others, and the summary names each one that failed and why. Batch ids from a range or from
file names go through `check_batch` like every other id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.batches import BatchIdError, check_batch, expand_range
from tasks.core.config import PerennialConfig
from tasks.core.storage import ImmutableKeyError
from tasks.data.expectations import suite_path
from tasks.data.ingest import land_from
from tasks.data.raw_files import RAW_FORMATS, IngestError
from tasks.data.validate import validate_batch_task
from tasks.data.verdict import BatchSummary, GatedBatch, gate_summary

# What refuses one batch but not the run: a missing or unreadable file, different bytes for a
# batch already landed, a malformed id.
BATCH_REFUSALS = (IngestError, BatchIdError, ImmutableKeyError, FileNotFoundError)
REFUSED = "refused"


@dataclass
class BatchPlan:
    """Which batches a run lands, from which file (None: the dataset's source)."""

    sources: dict[str, str | None]
    skipped: list[str] = field(default_factory=list)  # files of the folder not named as a batch
    refused: dict[str, str] = field(default_factory=dict)  # batch -> why, before landing


def name_patterns(config: PerennialConfig) -> list[re.Pattern[str]]:
    """File names a batch may arrive as: `<batch><ext>` for each raw format, and the file name
    of `source.path_template` (e.g. `weather-{batch}.csv`)."""
    formats = "|".join(re.escape(ext) for ext in RAW_FORMATS)
    patterns = [re.compile(rf"(?P<batch>.+?)(?:{formats})", re.IGNORECASE)]
    template = config.source.path_template
    if config.source.kind == "files" and template and "{batch}" in Path(template).name:
        before, after = Path(template).name.split("{batch}", 1)
        patterns.append(re.compile(re.escape(before) + r"(?P<batch>.+?)" + re.escape(after)))
    return patterns


def batch_of_name(name: str, config: PerennialConfig) -> str | None:
    """The batch a file name stands for, or None if it names no batch of the dataset's period."""
    for pattern in name_patterns(config):
        match = pattern.fullmatch(name)
        if match is None:
            continue
        try:
            return check_batch(match["batch"], config.time)
        except BatchIdError:
            continue
    return None


def folder_plan(folder: Path, config: PerennialConfig) -> BatchPlan:
    """Every regular file of `folder` (not its subfolders, not symlinks) named as a batch."""
    if not folder.is_dir():
        raise IngestError(f"{folder}: not a folder; give the folder your batch files arrive in")
    found: dict[str, list[Path]] = {}
    skipped = []
    for path in sorted(folder.iterdir()):
        batch = batch_of_name(path.name, config)
        if batch is None or path.is_symlink() or not path.is_file():
            skipped.append(path.name)
        else:
            found.setdefault(batch, []).append(path)
    plan = BatchPlan(sources={}, skipped=skipped)
    for batch, paths in sorted(found.items()):
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            plan.refused[batch] = f"{names}: several files for batch {batch}; keep one"
        else:
            plan.sources[batch] = str(paths[0].resolve())
    if not plan.sources and not plan.refused:
        raise IngestError(
            f"{folder}: no file named as a {config.time.batch_period} batch "
            f"(e.g. {expand_example(config)}); nothing to land"
        )
    return plan


def expand_example(config: PerennialConfig) -> str:
    example = {"month": "2013-01", "day": "2013-01-05", "week": "2013-W05"}
    return f"{example[config.time.batch_period]}.csv"


def batch_plan(
    config: PerennialConfig, batches: str, folder: str | None, gate: bool, served: bool
) -> BatchPlan:
    """The batches of a range/list, or of a folder; refuses what cannot run at all."""
    if bool(batches) == bool(folder):
        raise IngestError("give either a range of batches or a folder, not both or neither")
    if folder and served:
        # As for one batch: a served run's parameters come from the UI and the API and may not
        # name a folder on the worker's disk.
        raise IngestError(
            f"a served ingestion of {config.dataset} reads the dataset's configured source, "
            "not a folder named in its parameters"
        )
    if gate and not suite_path(config).is_file():
        raise IngestError(
            f"{suite_path(config)}: no expectation suite for {config.dataset} yet; land with "
            "--no-validate, then draft one with `perennial validate --profile FIRST..LAST`"
        )
    if folder:
        return folder_plan(Path(folder), config)
    return BatchPlan(sources=dict.fromkeys(expand_range(batches, config.time)))


@dataclass
class RefusedBatch(BatchSummary):
    """A batch refused before the gate: why (a missing or unreadable file, different bytes for a
    batch already landed, a malformed id)."""

    error: str


@dataclass
class IngestSummary:
    """What a run of many batches did: each batch's summary, the counts, and which batches
    failed (refused or quarantined) and why; `ok` when none did."""

    dataset: str
    batches: list[BatchSummary]
    landed: int
    unchanged: int
    passed: int
    quarantined: dict[str, str]  # batch -> the first blocking failure, and where its reason is
    refused: dict[str, str]  # batch -> why
    skipped_files: list[str]  # files of the folder not named as a batch
    ok: bool


def ingest_one(config: PerennialConfig, batch: str, source: str | None, gate: bool) -> BatchSummary:
    """Land one batch and gate it; a refusal is reported in the result, not raised."""
    try:
        check_batch(batch, config.time)
        landing = land_from(config, batch, source).status
    except BATCH_REFUSALS as exc:
        return refused_summary(config, batch, str(exc))
    result = validate_batch_task(config, batch) if gate else None
    return gate_summary(config, batch, landing, result)


def refused_summary(config: PerennialConfig, batch: str, why: str) -> RefusedBatch:
    return RefusedBatch(config.dataset, batch, REFUSED, "skipped", why)


def progress_line(summary: BatchSummary, position: int, total: int) -> str:
    head = f"[{position}/{total}] batch {summary.batch}: landing {summary.landing}"
    if isinstance(summary, RefusedBatch):
        return f"{head}: {summary.error}"
    text = f"{head}, gate {summary.gate}"
    if isinstance(summary, GatedBatch):
        text += f" ({summary.rows} rows)"
        if summary.failures:
            text += f": {summary.failures[0]}"
    return text


def run_summary(
    config: PerennialConfig, plan: BatchPlan, results: list[BatchSummary]
) -> IngestSummary:
    """What the run did: each batch's result, and which ones failed (refused or quarantined)."""
    refused = [r for r in results if isinstance(r, RefusedBatch)]
    quarantined = {
        r.batch: "; ".join(r.failures[:1]) + f" (reason in {r.reason_key})"
        for r in results
        if isinstance(r, GatedBatch) and r.gate == "failed"
    }
    return IngestSummary(
        dataset=config.dataset,
        batches=results,
        landed=sum(r.landing in ("landed", "revised") for r in results),
        unchanged=sum(r.landing == "unchanged" for r in results),
        passed=sum(r.gate == "passed" for r in results),
        quarantined=quarantined,
        refused={r.batch: r.error for r in refused},
        skipped_files=plan.skipped,
        ok=not refused and not quarantined,
    )


@task(name="plan-batches", cache_policy=NO_CACHE)
def batch_plan_task(
    config: PerennialConfig, batches: str, folder: str | None, gate: bool, served: bool
) -> BatchPlan:
    return batch_plan(config, batches, folder, gate, served)


@task(name="ingest-batch", cache_policy=NO_CACHE)
def ingest_batch_task(
    config: PerennialConfig,
    batch: str,
    source: str | None,
    gate: bool,
    position: int,
    total: int,
) -> BatchSummary:
    from tasks.core.run_logging import PROGRESS, run_logger

    summary = ingest_one(config, batch, source, gate)
    # The run's log shows in the UI and, run from the CLI, on stderr: `--json` stays clean.
    run_logger().info(progress_line(summary, position, total), extra=PROGRESS)
    return summary


@task(name="summarize-ingestion", cache_policy=NO_CACHE)
def run_summary_task(
    config: PerennialConfig, plan: BatchPlan, results: list[BatchSummary]
) -> IngestSummary:
    return run_summary(config, plan, results)
