"""Validate: the gate every batch passes before it can train or be scored.

Two stages. File checks (`tasks/filecheck.py`) read the raw bytes first: missing, truncated,
binary, mis-encoded or mis-delimited files fail there with a clear reason. Then the Great
Expectations suite (JSON in `great_expectations/expectations/<suite>.json`, reviewed like code;
`tasks/suite.py` drafts it) runs on the parsed frame. Each expectation has a GE severity, which
the dataset YAML may override (`validation.severity`): a failed `critical` one blocks the batch
(copied to `quarantine/` with a reason file; `validated/` gets nothing), `warning` and `info`
ones are reported only. Running GE and reading its results is `tasks/expectations.py`.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PerennialConfig, artifact_key
from tasks.expectations import (
    EXPECTATION,
    FILE_CHECK,
    Outcome,
    apply_severity,
    build_data_docs,
    docs_dir,
    run_suite,
    shorten,
)
from tasks.filecheck import FILE_READABLE, FileCheckError, plain_bytes
from tasks.ingest import (
    LandingRecord,
    landed_record,
    quarantine_reason_key,
    raw_extension,
    read_raw,
)
from tasks.storage import Storage

logger = logging.getLogger("perennial.validate")


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

    def blocking_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    def headline(self) -> str:
        passed = sum(o.success for o in self.outcomes)
        verdict = "passed" if self.passed else "FAILED"
        text = f"{verdict} {passed}/{len(self.outcomes)} checks"
        return text + (f", {len(self.warnings())} warnings" if self.warnings() else "")


# -- reading and typing a raw batch --------------------------------------------------------------


def typed_frame(raw: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    """The raw frame with its time column parsed to UTC (unparseable values become NaT, which
    the suite's not-null rule on the time column then reports)."""
    column = config.time.column
    if column not in raw.columns:
        return raw
    parsed = pd.to_datetime(raw[column], utc=True, errors="coerce", format="ISO8601")
    # GE vectorises only ns or tz-aware datetimes; `assign` copies no other column (pandas 3 CoW)
    return raw.assign(**{column: parsed.astype("datetime64[ns, UTC]")})


def parse_raw(
    data: bytes | None, record: LandingRecord, config: PerennialConfig
) -> tuple[pd.DataFrame | None, Outcome | None]:
    """The parsed frame, or the failed file check that stops the gate before GE."""
    ext = raw_extension(record.key)
    try:
        plain = plain_bytes(data, record.key, ext, config.validation)
        try:
            frame = read_raw(plain, ".parquet" if ext == ".parquet" else ".csv")
        except (ValueError, OSError) as exc:  # pandas' ParserError and pyarrow's are ValueErrors
            raise FileCheckError(
                FILE_READABLE,
                record.key,
                f"the reader failed: {shorten(exc, 300)}",
                "fix the file and land it as a revision (ingest --source)",
            ) from None
    except FileCheckError as exc:
        return None, Outcome(exc.check, None, "critical", False, error=str(exc), stage=FILE_CHECK)
    return typed_frame(frame, config), None


# -- the gate ----------------------------------------------------------------------------------


def validated_key(config: PerennialConfig, batch: str, suffix: str = ".parquet") -> str:
    return f"validated/{config.dataset}/{batch}{suffix}"


def reason_key(config: PerennialConfig, batch: str) -> str:
    return quarantine_reason_key(config, batch)


def gate_batch(storage: Storage, config: PerennialConfig, batch: str) -> GateResult:
    """Validate the newest landed revision of a batch; pass -> `validated/`, fail ->
    `quarantine/` with the reason. A batch already validated with the same content hash is not
    validated again."""
    record = landed_record(storage, config, batch)
    if record is None:
        raise FileNotFoundError(f"batch {batch} of {config.dataset} has not been landed")
    summary_key = validated_key(config, batch, ".json")
    if storage.exists(summary_key):
        summary = storage.read_json(summary_key)
        if summary["sha256"] == record.sha256 and summary["suite"] == config.validation.suite:
            outcomes = [Outcome(**o) for o in summary["outcomes"]]
            return GateResult(
                batch,
                True,
                record.sha256,
                summary["rows"],
                summary["suite"],
                outcomes,
                validated_key(config, batch),
                revision=summary.get("revision", 1),
                raw_key=record.key,
            )
    clock, timings = time.perf_counter(), {}
    data = storage.read_bytes(record.key) if storage.exists(record.key) else None
    frame, failed_file = parse_raw(data, record, config)
    timings["read_and_parse"] = time.perf_counter() - clock
    result = GateResult(
        batch, True, record.sha256, 0, config.validation.suite, [], revision=record.revision
    )
    result.raw_key, result.timings = record.key, timings
    if frame is None:
        result.outcomes = [failed_file] if failed_file else []
    else:
        clock = time.perf_counter()
        docs = docs_dir(config)
        outcomes = apply_severity(run_suite(frame, config, batch, docs), config.validation.severity)
        timings["great_expectations"] = time.perf_counter() - clock
        if len(frame) < config.validation.min_rows:
            outcomes.append(
                Outcome("perennial_min_rows", None, "critical", False, observed=len(frame))
            )
        result.rows, result.outcomes = len(frame), outcomes
    result.passed = not result.blocking_failures()
    clock = time.perf_counter()
    if result.passed and frame is not None:
        archive_reason(storage, config, batch)
        storage.write_parquet(validated_key(config, batch), frame)
        storage.write_json(summary_key, _summary(result))
        result.validated_key = validated_key(config, batch)
    else:
        quarantine(storage, config, result, record.key, data)
    timings["write"] = time.perf_counter() - clock
    if frame is not None and (docs := docs_dir(config)) is not None:
        clock = time.perf_counter()
        build_data_docs(config, docs)
        timings["data_docs"] = time.perf_counter() - clock
    return result


def _summary(result: GateResult) -> dict[str, Any]:
    return {
        "batch": result.batch,
        "revision": result.revision,
        "raw": result.raw_key,
        "sha256": result.sha256,
        "rows": result.rows,
        "suite": result.suite,
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
    storage.delete(validated_key(config, result.batch))
    storage.delete(validated_key(config, result.batch, ".json"))
    archive_reason(storage, config, result.batch, unless_sha256=result.sha256)
    if data is not None:
        storage.write_bytes(f"quarantine/{config.dataset}/{raw_key.rsplit('/', 1)[-1]}", data)
    result.reason_key = reason_key(config, result.batch)
    stage = FILE_CHECK if any(o.stage == FILE_CHECK for o in result.outcomes) else EXPECTATION
    storage.write_json(
        result.reason_key,
        {
            **_summary(result),
            "dataset": config.dataset,
            "stage": stage,
            "failed": [asdict(o) for o in result.blocking_failures()],
            "warnings": [asdict(o) for o in result.warnings()],
        },
    )


def archive_reason(
    storage: Storage, config: PerennialConfig, batch: str, unless_sha256: str | None = None
) -> None:
    """Keep an earlier revision's reason as `<batch>.r<N>.reason.json`: history keeps both, and
    `<batch>.reason.json` always speaks of the newest revision."""
    current = reason_key(config, batch)
    if not storage.exists(current):
        return
    reason = storage.read_json(current)
    if reason.get("sha256") == unless_sha256:
        return
    revision = reason.get("revision", 1)
    storage.write_json(f"quarantine/{config.dataset}/{batch}.r{revision}.reason.json", reason)
    storage.delete(current)


def landed_batches(storage: Storage, config: PerennialConfig) -> list[str]:
    """Batch ids landed so far (revisions of a batch count once)."""
    suffix = ".landed.json"
    keys = storage.list(f"landing/{config.dataset}")
    names = [k.rsplit("/", 1)[-1].removesuffix(suffix) for k in keys if k.endswith(suffix)]
    return sorted(name for name in names if not re.search(r"\.r\d+$", name))


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

    from tasks.storage import open_storage

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
    return result
