"""Validate: the gate every batch passes before it can train or be scored.

Two stages. File checks (`tasks/data/filecheck.py`) read the raw bytes first: missing, truncated,
binary, mis-encoded or mis-delimited files fail there with a clear reason. Then the Great
Expectations suite (JSON in `great_expectations/expectations/<suite>.json`, reviewed like code;
`tasks/data/suite.py` drafts it) is checked on the parsed frame: natively
(`tasks/data/checks.py`, no GE import on the critical path) for the types the drafting writes, by
real GE for anything else;
GE's own full result and Data Docs follow in the background (`tasks/data/data_docs.py`). Each
expectation has a GE severity, which the dataset YAML may override (`validation.severity`): a
failed `critical` one blocks the batch (copied to `quarantine/` with a reason file; `validated/`
gets nothing, `tasks/data/quarantine.py`), `warning` and `info` ones are reported only. Running GE
and reading its results is `tasks/data/expectations.py`; the verdict and its reports,
`tasks/data/verdict.py`.
"""

from __future__ import annotations

import io
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.artifacts import artifact_key
from tasks.core.config import PerennialConfig
from tasks.core.storage import Storage, content_hash
from tasks.data.checks import NotNative, evaluate_suite, load_suite
from tasks.data.expectations import (
    NoSuiteError,
    Outcome,
    apply_severity,
    docs_dir,
    profile_command,
    run_suite,
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
from tasks.data.personal_data import holds_personal_data, personal_data, withheld
from tasks.data.quarantine import archive_reason, quarantine
from tasks.data.reference_checks import check_reference
from tasks.data.verdict import GateResult, refusal, report_markdown, stored_verdict
from tasks.notify.alerts import alert_quarantine

logger = logging.getLogger("perennial.validate")

# The gate's own version: raise it when a change to the gate (this module, the parsing, the
# checks) changes which batches pass, so that batches validated before it are validated again.
# 3: truncated_file, bounded decompression; 4: times without an offset read in time.timezone;
# 5: the reference checks (tasks/data/reference_checks.py); 6: their medians only warn on a
# reference of fewer than 3 batches; 7: personal data in text columns (tasks/data/personal_data.py).
GATE_VERSION = 7
NATIVE, GREAT_EXPECTATIONS = "native", "great_expectations"  # what decided a batch


class GateRefusedError(RuntimeError):
    """A flow was asked to use a batch that the validation gate quarantined."""


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
        "privacy": config.privacy.model_dump(mode="json"),  # what a batch may carry
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
        storage.write_json(
            catalog.key("validated_summary", config, batch=batch), stored_verdict(result)
        )
    else:
        quarantine(storage, config, result, record.key, data)
    timings["write"] = time.perf_counter() - clock
    # Data Docs show unexpected values: none of a batch found to hold personal data.
    personal = holds_personal_data(result.outcomes)
    if frame is not None and not personal and (docs := docs_dir(config)) is not None:
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
    # Personal data is never a matter of severity: it blocks, whatever the YAML says; and GE
    # keeps no result (with its unexpected values) of a batch that holds it.
    personal = personal_data(frame, config)
    try:
        outcomes, engine = evaluate_suite(frame, config, batch), NATIVE
    except NotNative as why:
        logger.info("gate %s: %s; Great Expectations decides this batch", batch, why)
        docs = None if holds_personal_data(personal) else docs_dir(config)
        outcomes, engine = run_suite(frame, config, batch, docs), GREAT_EXPECTATIONS
    # The batch against how the reference batches varied (the suite's meta), whoever decided
    # the expectations: GE has no check of a batch's statistics against a range of batches.
    outcomes += check_reference(frame, load_suite(config).get("meta") or {}, config, batch)
    outcomes = withheld(apply_severity(outcomes, config.validation.severity), personal)
    return [*outcomes, *personal], engine


# -- the tasks -----------------------------------------------------------------------------------


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
