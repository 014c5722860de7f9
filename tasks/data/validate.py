"""Validate: the gate every batch passes before it can train or be scored.

Two stages. File checks (`tasks/data/filecheck.py`) read the raw bytes first: missing, truncated,
binary, mis-encoded or mis-delimited files fail there with a clear reason. Then the Great
Expectations suite (JSON in `great_expectations/expectations/<suite>.json`, reviewed like code;
`tasks/data/suite.py` drafts it) is checked on the parsed frame: natively (`tasks/data/checks.py`,
no GE
import on the critical path) for the types the drafting writes, by real GE for anything else;
GE's own full result and Data Docs follow in the background (`tasks/data/data_docs.py`). Each
expectation has a GE severity, which the dataset YAML may override (`validation.severity`): a
failed `critical` one blocks the batch (copied to `quarantine/` with a reason file; `validated/`
gets nothing), `warning` and `info` ones are reported only. Running GE and reading its results
is `tasks/data/expectations.py`.
"""

from __future__ import annotations

import io
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.artifacts import artifact_key
from tasks.core.catalog import quarantine_reason_key
from tasks.core.config import PerennialConfig
from tasks.core.storage import Storage, content_hash
from tasks.data.checks import NotNative, evaluate_suite, load_suite
from tasks.data.expectations import (
    EXPECTATION,
    FILE_CHECK,
    NoSuiteError,
    Outcome,
    apply_severity,
    docs_dir,
    profile_command,
    run_suite,
    shorten,
    suite_bytes,
    suite_path,
)
from tasks.data.ingest import (
    LandingRecord,
    NotLandedError,
    land_batch_task,
    landed_batches,
    landed_record,
)
from tasks.data.parse import parse_raw, typed_frame
from tasks.data.reference_checks import check_reference
from tasks.notify.alerts import alert_quarantine

logger = logging.getLogger("perennial.validate")

# The gate's own version: raise it when a change to this module changes which batches pass, so
# that batches validated before the change are validated again.
# 3: truncated_file, bounded decompression; 4: times without an offset read in time.timezone;
# 5: the reference checks (tasks/data/reference_checks.py); 6: their medians only warn on a
# reference of fewer than 3 batches.
GATE_VERSION = 6
NATIVE, GREAT_EXPECTATIONS = "native", "great_expectations"  # what decided a batch


class GateRefusedError(RuntimeError):
    """A flow was asked to use a batch that the validation gate quarantined."""


@dataclass
class GateResult:
    batch: str
    passed: bool
    sha256: str
    rows: int
    suite: str
    outcomes: list[Outcome]
    validated_key: str | None = None
    reason_key: str | None = None
    revision: int = 1
    raw_key: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per gate step
    gate: str = ""  # fingerprint of the gate the batch was validated under
    engine: str = ""  # NATIVE or GREAT_EXPECTATIONS (a suite the native checks cannot read)

    def blocking_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    def headline(self) -> str:
        """E.g. `1 of 84 checks failed: expect_column_values_to_be_between on distance`."""
        total, failed, warned = len(self.outcomes), self.blocking_failures(), self.warnings()
        if failed:
            text = f"{len(failed)} of {total} checks failed: {_checks(failed)}"
            return text + (f" ({len(warned)} warnings)" if warned else "")
        text = f"{total - len(warned)} of {total} checks passed"
        return text + (f", {len(warned)} warned: {_checks(warned)}" if warned else "")


def _checks(outcomes: list[Outcome]) -> str:
    """Failed checks, compactly: each rule once, with the columns it failed on."""
    columns: dict[str, list[str]] = {}
    for outcome in outcomes:
        columns.setdefault(outcome.expectation, [])
        if outcome.column and outcome.column not in columns[outcome.expectation]:
            columns[outcome.expectation].append(outcome.column)
    text = "; ".join(
        f"{rule} on {', '.join(named)}" if named else rule for rule, named in columns.items()
    )
    return shorten(text, 400)


# -- the gate ----------------------------------------------------------------------------------


def gate_fingerprint(config: PerennialConfig) -> str:
    """What decides whether a batch passes, besides its bytes: the suite's content, the gate
    settings of the dataset YAML (severities, minimum rows, file limits) and `GATE_VERSION`.
    A batch validated under another fingerprint is validated again."""
    settings = config.validation.model_dump(mode="json", exclude={"gx_root"})
    facts = {
        "gate_version": GATE_VERSION,
        "suite_sha256": content_hash(suite_bytes(config)),
        "settings": settings,
    }
    return content_hash(json.dumps(facts, sort_keys=True).encode())


def gate_batch(storage: Storage, config: PerennialConfig, batch: str) -> GateResult:
    """Validate the newest landed revision of a batch; pass -> `validated/`, fail ->
    `quarantine/` with the reason. A batch already validated with the same content hash under
    the same gate fingerprint (suite content, gate settings, gate version) is not validated
    again."""
    record = landed_record(storage, config, batch)
    if record is None:
        raise FileNotFoundError(f"batch {batch} of {config.dataset} has not been landed")
    if not suite_path(config).is_file():
        # Refused before any state changes: the batch stays landed and is gated once a suite
        # exists (the first batches of a new dataset are its reference).
        reference = landed_batches(storage, config) or [batch]
        raise NoSuiteError(
            f"no suite for {config.dataset}: run `{profile_command(config, reference)}`"
        )
    fingerprint = gate_fingerprint(config)
    if (done := _already_validated(storage, config, record, fingerprint)) is not None:
        return done
    clock, timings = time.perf_counter(), {}
    data = storage.read_bytes(record.key) if storage.exists(record.key) else None
    frame, failed_file = parse_raw(data, record, config)
    timings["read_and_parse"] = time.perf_counter() - clock
    result = GateResult(
        batch, True, record.sha256, 0, config.validation.suite, [], revision=record.revision
    )
    result.raw_key, result.timings, result.gate = record.key, timings, fingerprint
    parquet: Future[bytes] | None = None
    if frame is None:
        result.outcomes = [failed_file] if failed_file else []
    else:
        # Parquet is encoded while the checks run: pyarrow releases the GIL, so on two cores
        # the write costs little more than the storage put; a failed batch drops the bytes.
        with ThreadPoolExecutor(max_workers=1) as pool:
            parquet = pool.submit(parquet_bytes, frame)
            clock = time.perf_counter()
            result.outcomes, result.engine = check_expectations(
                typed_frame(frame, config), config, batch
            )
            timings["expectations"] = time.perf_counter() - clock
        if len(frame) < config.validation.min_rows:
            result.outcomes.append(
                Outcome("perennial_min_rows", None, "critical", False, observed=len(frame))
            )
        result.rows = len(frame)
    result.passed = not result.blocking_failures()
    clock = time.perf_counter()
    if result.passed and parquet is not None:
        archive_reason(storage, config, batch)
        result.validated_key = catalog.key("validated", config, batch=batch)
        storage.write_bytes(result.validated_key, parquet.result())
        storage.write_json(catalog.key("validated_summary", config, batch=batch), _summary(result))
    else:
        quarantine(storage, config, result, record.key, data)
    timings["write"] = time.perf_counter() - clock
    if frame is not None and (docs := docs_dir(config)) is not None:
        from tasks.data.data_docs import request_docs

        request_docs(docs, config, result)  # GE's result and Data Docs, in the background
    return result


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as Parquet (as `Storage.write_parquet` writes it), in memory."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _already_validated(
    storage: Storage, config: PerennialConfig, record: LandingRecord, fingerprint: str
) -> GateResult | None:
    """The stored verdict of this very revision under this gate, if it passed before."""
    summary_key = catalog.key("validated_summary", config, batch=record.batch)
    if not storage.exists(summary_key):
        return None
    summary = storage.read_json(summary_key)
    if summary["sha256"] != record.sha256 or summary.get("gate") != fingerprint:
        return None
    return GateResult(
        record.batch,
        True,
        record.sha256,
        summary["rows"],
        summary["suite"],
        [Outcome(**o) for o in summary["outcomes"]],
        catalog.key("validated", config, batch=record.batch),
        revision=summary.get("revision", 1),
        raw_key=record.key,
        gate=fingerprint,
        engine=summary.get("engine", ""),
    )


def check_expectations(
    frame: pd.DataFrame, config: PerennialConfig, batch: str
) -> tuple[list[Outcome], str]:
    """The suite's outcomes on the typed frame (YAML severities applied) and what decided them:
    the native checks, or real GE when the suite holds anything they do not reproduce."""
    try:
        outcomes, engine = evaluate_suite(frame, config, batch), NATIVE
    except NotNative as why:
        logger.info("gate %s: %s; Great Expectations decides this batch", batch, why)
        outcomes, engine = run_suite(frame, config, batch, docs_dir(config)), GREAT_EXPECTATIONS
    # The batch against how the reference batches varied (the suite's meta), whoever decided
    # the expectations: GE has no check of a batch's statistics against a range of batches.
    outcomes += check_reference(frame, load_suite(config).get("meta") or {}, config, batch)
    return apply_severity(outcomes, config.validation.severity), engine


def _summary(result: GateResult) -> dict[str, Any]:
    return {
        "batch": result.batch,
        "revision": result.revision,
        "raw": result.raw_key,
        "sha256": result.sha256,
        "rows": result.rows,
        "suite": result.suite,
        "gate": result.gate,
        "engine": result.engine,
        "outcomes": [asdict(o) for o in result.outcomes],
    }


def quarantine(
    storage: Storage,
    config: PerennialConfig,
    result: GateResult,
    raw_key: str,
    data: bytes | None,
) -> None:
    """Copy the raw file to quarantine with its reason; remove any stale validated copy."""
    storage.delete(catalog.key("validated", config, batch=result.batch))
    storage.delete(catalog.key("validated_summary", config, batch=result.batch))
    archive_reason(storage, config, result.batch, unless_sha256=result.sha256)
    if data is not None:
        storage.write_bytes(
            catalog.key("quarantined_file", config, file=raw_key.rsplit("/", 1)[-1]), data
        )
    result.reason_key = quarantine_reason_key(config, result.batch)
    stage = FILE_CHECK if any(o.stage == FILE_CHECK for o in result.outcomes) else EXPECTATION
    storage.write_json(
        result.reason_key,
        {
            **_summary(result),
            "dataset": config.dataset,
            "stage": stage,
            "message": result.headline(),
            "failed": [asdict(o) for o in result.blocking_failures()],
            "warnings": [asdict(o) for o in result.warnings()],
        },
    )


def archive_reason(
    storage: Storage, config: PerennialConfig, batch: str, unless_sha256: str | None = None
) -> None:
    """Keep an earlier revision's reason as `<batch>.r<N>.reason.json`: history keeps both, and
    `<batch>.reason.json` always speaks of the newest revision."""
    current = quarantine_reason_key(config, batch)
    if not storage.exists(current):
        return
    reason = storage.read_json(current)
    if reason.get("sha256") == unless_sha256:
        return
    revision = reason.get("revision", 1)
    storage.write_json(quarantine_reason_key(config, batch, revision), reason)
    storage.delete(current)


# -- reports -----------------------------------------------------------------------------------


def report_markdown(config: PerennialConfig, result: GateResult) -> str:
    """A table a person reads in the Prefect UI: failures first, then warnings, then passes."""
    verdict = "passed" if result.passed else "**FAILED** (quarantined)"
    lines = [
        f"# Gate {config.dataset} {result.batch} (revision {result.revision}): {verdict}",
        "",
        f"{result.rows:,} rows, suite `{result.suite}`, raw `{result.raw_key}`"
        + (f", reason `{result.reason_key}`" if result.reason_key else ""),
        "",
        "| expectation | column | severity | result | examples |",
        "| --- | --- | --- | --- | --- |",
    ]
    order = {False: 0, True: 1}
    ranked = sorted(result.outcomes, key=lambda o: (order[o.success], o.severity != "critical"))
    for o in ranked:
        status = "pass" if o.success else ("FAIL" if o.severity == "critical" else "warn")
        detail = o.error or (
            f"{o.unexpected_count} unexpected ({o.unexpected_percent:.2f}%)"
            if o.unexpected_count
            else (f"observed {shorten(o.observed, 60)}" if o.observed is not None else "")
        )
        examples = shorten(o.examples, 80) if o.examples else ""
        cells = [o.expectation, o.column or "", o.severity, f"{status} {detail}".strip(), examples]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def _emit_quarantined(config: PerennialConfig, result: GateResult) -> None:
    from prefect.events import emit_event

    emit_event(
        event="perennial.batch.quarantined",
        resource={"prefect.resource.id": f"perennial.dataset.{config.dataset}"},
        payload={
            "batch": result.batch,
            "revision": result.revision,
            "reason_key": result.reason_key,
            "failed": [o.describe() for o in result.blocking_failures()],
        },
    )


@task(name="validate-batch", cache_policy=NO_CACHE)
def validate_batch_task(config: PerennialConfig, batch: str) -> GateResult:
    from prefect import get_run_logger
    from prefect.artifacts import create_markdown_artifact

    from tasks.core.storage import open_storage

    result = gate_batch(open_storage(config.home), config, batch)
    log = get_run_logger()
    log.info("gate %s: %s", batch, result.headline())
    for outcome in result.warnings():
        log.warning("gate %s warning: %s", batch, outcome.describe())
    for outcome in result.blocking_failures():
        log.error("gate %s failed: %s", batch, outcome.describe())
    create_markdown_artifact(
        key=artifact_key(f"gate-{config.dataset}-{batch}"),
        markdown=report_markdown(config, result),
        description=f"validation gate of {config.dataset} {batch}: {result.headline()}",
    )
    if not result.passed:
        _emit_quarantined(config, result)
        alert_quarantine(config, result)
    return result


@dataclass
class BatchSummary:
    """What the ingestion flows report of a batch: how it landed (`landed`, `revised`,
    `unchanged`, or `refused`) and the gate's verdict (`passed`, `failed`, or `skipped`)."""

    dataset: str
    batch: str
    landing: str
    gate: str


@dataclass
class GatedBatch(BatchSummary):
    """A batch the gate judged: the blocking failures and the warnings, one line each, and
    where the reason of a quarantined batch is (None when it passed)."""

    headline: str
    rows: int
    failures: list[str]
    warnings: list[str]
    reason_key: str | None


def gate_summary(
    config: PerennialConfig, batch: str, landing: str, result: GateResult | None
) -> BatchSummary:
    """What the ingestion flow reports: the landing status and the gate's verdict (`skipped`
    without a gate result)."""
    if result is None:
        return BatchSummary(config.dataset, batch, landing, "skipped")
    return GatedBatch(
        dataset=config.dataset,
        batch=batch,
        landing=landing,
        gate="passed" if result.passed else "failed",
        headline=result.headline(),
        rows=result.rows,
        failures=[o.describe() for o in result.blocking_failures()],
        warnings=[o.describe() for o in result.warnings()],
        reason_key=result.reason_key,
    )


def refusal(results: dict[str, GateResult], use: str) -> str | None:
    """Why `use` (e.g. "training") must not go on with these gate results, or None."""
    failed = [r for r in results.values() if not r.passed]
    if not failed:
        return None
    details = "; ".join(f"{r.batch}: {r.headline()} (see {r.reason_key})" for r in failed)
    return f"{use} refused: quarantined batch(es): {details}"


@task(name="gate-batches", cache_policy=NO_CACHE)
def gate_batches_task(
    config: PerennialConfig,
    batches: list[str],
    use: str,
    land_missing: bool = True,
    refuse: bool = True,
) -> dict[str, GateResult]:
    """Every batch through the gate before `use` touches it: land it from the dataset's source
    if it is not landed yet (with `land_missing`; else refuse it), validate it, and (with
    `refuse`) raise `GateRefusedError` if any is quarantined."""
    from tasks.core.storage import open_storage

    storage = open_storage(config.home)
    results = {}
    for batch in batches:
        if landed_record(storage, config, batch) is None:
            if not land_missing:
                raise NotLandedError(
                    f"batch {batch} of {config.dataset} has not been landed; run ingest first"
                )
            land_batch_task(config, batch, None)
        results[batch] = validate_batch_task(config, batch)
    if refuse and (why := refusal(results, use)):
        raise GateRefusedError(why)
    return results
