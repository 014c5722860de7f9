"""Expectations: the Great Expectations side of the gate. The GE file context (read once per
process; results kept in memory), the suite run on a parsed batch, its results in the words a
person needs (`Outcome`), severities from the dataset YAML, and the Data Docs.

Great Expectations takes 10 s to import: it is imported here only, inside the functions that
need it, so that only a process that runs a gate pays for it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.batches import period_bounds
from tasks.core.config import DEFAULT_CONFIG, PerennialConfig

DATASOURCE, BATCH_DEFINITION = "perennial", "whole"
EXAMPLES = 5  # offending values kept per failed expectation
EXAMPLE_ROWS = 3  # offending rows kept per failed expectation
STRING_TYPE = "str"
NUMBER_TYPES = ["int64", "int32", "float64", "float32", "Int64", "Float64"]
FILE_CHECK, EXPECTATION = "file_check", "expectation"  # the two stages of the gate
DOCS_FOLDER = "data_docs"
RESULTS_STORE = ".validation_results"  # GE's results behind the Data Docs, under DOCS_FOLDER
RANGE_RULE = "expect_column_values_to_be_between"
REMOTE_ASSET = re.compile(r"https://great-expectations-web-assets\.s3[^'\")]*")


class NoSuiteError(FileNotFoundError):
    """No GE project (so no suite) for the dataset yet: draft one before validating."""


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
    message: str | None = None  # what failed and what to do, in words (e.g. a range failure)

    def describe(self) -> str:
        if self.stage == FILE_CHECK:
            return f"file check {self.expectation} ({self.severity}): {self.error}"
        where = f"column '{self.column}'" if self.column else "table"
        text = f"{self.expectation} on {where} ({self.severity})"
        if self.message:
            return f"{text}: {self.message}"
        if self.error:
            return f"{text}: error {self.error}"
        if self.unexpected_count:
            text += f": {self.unexpected_count} unexpected ({self.unexpected_percent:.2f}%)"
        elif self.observed is not None:
            text += f": observed {shorten(self.observed)}"
        if self.examples:
            text += f", e.g. {shorten(self.examples[:EXAMPLES])}"
        return text


def profile_command(config: PerennialConfig, batches: list[str]) -> str:
    """The command that drafts the suite over `batches` (first..last), for messages."""
    ordered = sorted(batches)
    spec = ordered[0] if len(set(ordered)) == 1 else f"{ordered[0]}..{ordered[-1]}"
    command = f"perennial validate --profile {spec}"
    path = config.config_path
    if path is not None and Path(path).resolve() != DEFAULT_CONFIG.resolve():
        command += f" --config {path}"
    return command


def range_message(
    outcome: Outcome,
    kwargs: Mapping[str, Any],
    frame: pd.DataFrame,
    config: PerennialConfig,
    reference: list[str],
    batch: str,
) -> str | None:
    """A failed drafted range, in words: the observed values outside it, the reference range and
    the batches it was drafted from, and the command that re-profiles over a longer reference.
    None for ranges that are not numbers drafted from a reference (the batch period's bounds)."""
    low, high, column = kwargs.get("min_value"), kwargs.get("max_value"), outcome.column
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        return None
    if column is None or column not in frame.columns:
        return None
    values = pd.to_numeric(frame[column], errors="coerce")
    found = []
    for side, outside in (("below", values < low), ("above", values > high)):
        picked = values[outside]
        if len(picked) == 1:
            found.append(f"{picked.iloc[0]:g} {side}")
        elif len(picked) > 1:
            found.append(f"{len(picked):,} values {side} ({picked.min():g} to {picked.max():g})")
    if not found:
        return None
    if reference:
        drafted = f" drafted from {reference[0]}..{reference[-1]}"
        longer = profile_command(config, [*reference, batch])
    else:
        drafted, longer = "", f"perennial validate --profile <first batch>..{batch}"
    return (
        f"{column}: {' and '.join(found)} the reference range [{low:g}, {high:g}]{drafted}; "
        f"if this is normal, re-profile over a longer reference: {longer}"
    )


def shorten(value: Any, limit: int = 160) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@lru_cache(maxsize=4)
def runtime_context(gx_root: Path, docs_dir: Path | None = None) -> Any:
    """The GE file context, read once per process, with validation results kept in memory (so
    runs do not grow `uncommitted/`) or, with Data Docs, beside them under `docs_dir`, and
    nothing written back to the committed config."""
    import yaml

    import great_expectations as gx

    config_file = gx_root / "great_expectations.yml"
    if not config_file.is_file():
        raise NoSuiteError(f"{config_file}: no GE project here; run `perennial validate --profile`")
    project = yaml.safe_load(config_file.read_text())
    project["stores"]["validation_results_store"]["store_backend"] = {
        "class_name": "InMemoryStoreBackend"
    }
    project["data_docs_sites"] = {}
    if docs_dir is not None:
        # Results kept beside the docs: each background worker (`tasks/data/data_docs.py`) is a new
        # process, and a site built from one process's results drops the pages of the others.
        # `build_data_docs` prunes them to `data_docs_keep`.
        project["stores"]["validation_results_store"]["store_backend"] = {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir / RESULTS_STORE),
        }
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


def suite_path(config: PerennialConfig) -> Path:
    """The suite's JSON in the GE file context: the rules, reviewed like code."""
    return Path(config.validation.gx_root) / "expectations" / f"{config.validation.suite}.json"


def suite_bytes(config: PerennialConfig) -> bytes:
    """The suite's JSON; NoSuiteError (a refusal, with the next step) if none was drafted."""
    path = suite_path(config)
    if not path.is_file():
        raise NoSuiteError(
            f"{path}: no expectation suite for {config.dataset} yet; draft one from landed "
            "batches with `perennial validate --profile B1..B2`, then review it"
        )
    return path.read_bytes()


def docs_dir(config: PerennialConfig) -> Path | None:
    """Where Data Docs go: `PERENNIAL_HOME/data_docs` for a local home with docs enabled."""
    if not config.validation.data_docs or "://" in config.home:
        return None
    return Path(config.home).resolve() / DOCS_FOLDER


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
    outcomes = [_outcome(item) for item in items]
    reference = list(definition.suite.meta.get("reference_batches") or [])
    for item, outcome in zip(items, outcomes, strict=True):
        if not outcome.success and outcome.expectation == RANGE_RULE:
            kwargs = item.expectation_config.kwargs
            outcome.message = range_message(outcome, kwargs, frame, config, reference, batch)
    return outcomes


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


def build_data_docs(config: PerennialConfig, docs: Path) -> None:
    """Render the newest validation's Data Docs page (and the index) under `docs`, without GE's
    remote images (a tracking pixel), keeping the newest `data_docs_keep` validation pages.

    Only the newest page is rendered: rebuilding the whole site re-rendered every validation
    this process had kept, so each gate of the demo was slower than the last (Data Docs 2.1 s
    for the first month, 5.8 s for the fifth). The first build of a site renders it whole."""
    context = runtime_context(Path(config.validation.gx_root), docs)
    store = context.validation_results_store
    keep = config.validation.data_docs_keep
    keys = sorted(store.list_keys(), key=lambda k: str(k.run_id.run_time))
    # The in-memory results store lives as long as the process (a served worker): prune it.
    for stale in keys[:-keep]:
        store.remove_key(stale)
    started = time.time()
    fresh_site = not (docs / "index.html").exists()
    context.build_data_docs(resource_identifiers=None if fresh_site else keys[-1:] or None)
    pages = sorted(docs.glob("validations/**/*.html"), key=os.path.getmtime)
    for page in pages[:-keep]:
        page.unlink()
    for page in docs.rglob("*.html"):
        if page.stat().st_mtime < started - 1:  # untouched by this build: already clean
            continue
        text = page.read_text()
        if REMOTE_ASSET.search(text):
            page.write_text(REMOTE_ASSET.sub("", text))
