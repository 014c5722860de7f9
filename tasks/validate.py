"""Validate: the gate every batch passes before it can train or be scored.

Two stages. File checks (`tasks/filecheck.py`) read the raw bytes first: missing, truncated,
binary, mis-encoded or mis-delimited files fail there with a clear reason. Then the Great
Expectations suite (JSON in `great_expectations/expectations/<suite>.json`, reviewed like code;
`tasks/suite.py` drafts it) runs on the parsed frame. Each expectation has a GE severity, which
the dataset YAML may override (`validation.severity`): a failed `critical` one blocks the batch
(copied to `quarantine/` with a reason file; `validated/` gets nothing), `warning` and `info`
ones are reported only. Great Expectations takes 10 s to import: it is imported here only,
when a gate runs, and its context is built once per process.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.batches import period_bounds
from tasks.config import PerennialConfig
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

DATASOURCE, BATCH_DEFINITION = "perennial", "whole"
EXAMPLES = 5  # offending values kept per failed expectation
EXAMPLE_ROWS = 3  # offending rows kept per failed expectation
STRING_TYPE = "str"
NUMBER_TYPES = ["int64", "int32", "float64", "float32", "Int64", "Float64"]
FILE_CHECK, EXPECTATION = "file_check", "expectation"  # the two stages of the gate
DOCS_FOLDER = "data_docs"
REMOTE_ASSET = re.compile(r"https://great-expectations-web-assets\.s3[^'\")]*")


@dataclass
class Outcome:
    """One check's result (a file check or an expectation), in the words a person needs."""

    expectation: str
    column: str | None
    severity: str
    success: bool
    observed: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None
    stage: str = EXPECTATION
    rows: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> str:
        if self.stage == FILE_CHECK:
            return f"file check {self.expectation} ({self.severity}): {self.error}"
        where = f"column '{self.column}'" if self.column else "table"
        text = f"{self.expectation} on {where} ({self.severity})"
        if self.error:
            return f"{text}: error {self.error}"
        if self.unexpected_count:
            text += f": {self.unexpected_count} unexpected ({self.unexpected_percent:.2f}%)"
        elif self.observed is not None:
            text += f": observed {_short(self.observed)}"
        if self.examples:
            text += f", e.g. {_short(self.examples[:EXAMPLES])}"
        return text


def _short(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


# -- the GE context ---------------------------------------------------------------------------


@lru_cache(maxsize=4)
def runtime_context(gx_root: Path, docs_dir: Path | None = None) -> Any:
    """The GE file context, read once per process, with validation results kept in memory (so
    runs do not grow `uncommitted/`), Data Docs (if any) under `docs_dir`, and nothing written
    back to the committed config."""
    import yaml

    import great_expectations as gx

    config_file = gx_root / "great_expectations.yml"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{config_file}: no GE project here; run `perennial validate --profile`"
        )
    project = yaml.safe_load(config_file.read_text())
    project["stores"]["validation_results_store"]["store_backend"] = {
        "class_name": "InMemoryStoreBackend"
    }
    project["data_docs_sites"] = {}
    if docs_dir is not None:
        project["data_docs_sites"] = {
            "local_site": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        }
    project["analytics_enabled"] = False
    project["progress_bars"] = {"globally": False}
    return gx.get_context(mode="file", context_root_dir=str(gx_root), project_config=project)


def writable_context(gx_root: Path) -> Any:
    """A plain file context, for creating suites and validation definitions (commits to disk)."""
    import great_expectations as gx

    runtime_context.cache_clear()
    return gx.get_context(mode="file", context_root_dir=str(gx_root))


def docs_dir(config: PerennialConfig) -> Path | None:
    """Where Data Docs go: `PERENNIAL_HOME/data_docs` for a local home with docs enabled."""
    if not config.validation.data_docs or "://" in config.home:
        return None
    return Path(config.home).resolve() / DOCS_FOLDER


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
                f"the reader failed: {_short(exc, 300)}",
                "fix the file and land it as a revision (ingest --source)",
            ) from None
    except FileCheckError as exc:
        return None, Outcome(exc.check, None, "critical", False, error=str(exc), stage=FILE_CHECK)
    return typed_frame(frame, config), None


# -- running the suite -------------------------------------------------------------------------


def run_suite(
    frame: pd.DataFrame, config: PerennialConfig, batch: str, docs: Path | None = None
) -> list[Outcome]:
    """Every expectation at GE's BASIC level (observed values, unexpected counts and a few
    examples), then again at the detailed level, with offending rows, for the failed ones only.
    Offending rows cost a pass over the frame per expectation (SUMMARY with rows for all was
    3.4x slower than BASIC on 1M flights rows); a batch that passes never pays them."""
    context = runtime_context(Path(config.validation.gx_root), docs)
    start, end = period_bounds(batch, config.time)
    parameters = {"batch_start": start.tz_convert("UTC"), "batch_end": end.tz_convert("UTC")}
    definition = context.validation_definitions.get(config.validation.suite)
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=parameters,
        result_format={"result_format": "BASIC", "partial_unexpected_count": EXAMPLES},
    )
    items = list(result.results)
    failed = {item.expectation_config.id for item in items if not item.success}
    if failed:
        detailed = _failure_details(definition, frame, failed, parameters)
        items = [detailed.get(item.expectation_config.id, item) for item in items]
    return [_outcome(item) for item in items]


def _failure_details(
    definition: Any, frame: pd.DataFrame, failed: set[str], parameters: dict[str, Any]
) -> dict[str, Any]:
    """Detailed results (examples and offending rows) of the failed expectations, by id."""
    batch = definition.batch_definition.get_batch(batch_parameters={"dataframe": frame})
    result_format = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": EXAMPLES,
        "include_unexpected_rows": True,
    }
    return {
        expectation.id: batch.validate(
            expectation, result_format=result_format, expectation_parameters=parameters
        )
        for expectation in definition.suite.expectations
        if expectation.id in failed
    }


def _outcome(item: Any) -> Outcome:
    spec = item.expectation_config
    details = item.result or {}
    column = spec.kwargs.get("column") or spec.kwargs.get("column_list")
    rows = details.get("unexpected_rows")
    return Outcome(
        expectation=spec.type,
        column=", ".join(column) if isinstance(column, list) else column,
        severity=str(getattr(spec.severity, "value", spec.severity) or "critical"),
        success=bool(item.success),
        observed=_plain(details.get("observed_value")),
        unexpected_count=details.get("unexpected_count"),
        unexpected_percent=details.get("unexpected_percent"),
        examples=_column_mismatch(details)
        or [_plain(v) for v in details.get("partial_unexpected_list") or []][:EXAMPLES],
        error=_error_message(item),
        rows=_plain(rows.head(EXAMPLE_ROWS).to_dict("records"))
        if isinstance(rows, pd.DataFrame) and not item.success
        else [],
    )


def _column_mismatch(details: dict[str, Any]) -> list[str]:
    """Which columns are missing or unexpected, from a failed column-set expectation."""
    mismatched = (details.get("details") or {}).get("mismatched") or {}
    return [f"missing {c}" for c in mismatched.get("missing") or []] + [
        f"unexpected {c}" for c in mismatched.get("unexpected") or []
    ]


def apply_severity(outcomes: list[Outcome], overrides: Mapping[str, str]) -> list[Outcome]:
    """The dataset YAML's severities on top of the suite's: `type:column` wins over `type`."""
    for outcome in outcomes:
        outcome.severity = overrides.get(
            f"{outcome.expectation}:{outcome.column}",
            overrides.get(outcome.expectation, outcome.severity),
        )
    return outcomes


def _error_message(item: Any) -> str | None:
    info = item.exception_info or {}
    if "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict)]
    return "; ".join(m for m in messages if m) or None


def _plain(value: Any) -> Any:
    """JSON-friendly form of a value GE observed."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


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


def build_data_docs(config: PerennialConfig, docs: Path) -> None:
    """Render the Data Docs of this process's validations under `docs`, without GE's remote
    images (a tracking pixel), keeping the newest `data_docs_keep` validation pages."""
    context = runtime_context(Path(config.validation.gx_root), docs)
    store = context.validation_results_store
    keep = config.validation.data_docs_keep
    # The in-memory results store lives as long as the process (a served worker): prune it.
    for stale in sorted(store.list_keys(), key=lambda k: str(k.run_id.run_time))[:-keep]:
        store.remove_key(stale)
    context.build_data_docs()
    pages = sorted(docs.glob("validations/**/*.html"), key=os.path.getmtime)
    for page in pages[:-keep]:
        page.unlink()
    for page in docs.rglob("*.html"):
        text = page.read_text()
        if REMOTE_ASSET.search(text):
            page.write_text(REMOTE_ASSET.sub("", text))


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
            else (f"observed {_short(o.observed, 60)}" if o.observed is not None else "")
        )
        examples = _short(o.examples, 80) if o.examples else ""
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
        key=re.sub(r"[^a-z0-9-]", "-", f"gate-{config.dataset}-{batch}".lower()),
        markdown=report_markdown(config, result),
        description=f"validation gate of {config.dataset} {batch}: {result.headline()}",
    )
    if not result.passed:
        _emit_quarantined(config, result)
    return result
