"""Checks: the committed Great Expectations suite, evaluated natively and vectorised.

The suite stays a GE suite: JSON under `great_expectations/expectations/`, drafted by GE tooling
(`tasks/data/suite.py`) and reviewed like code. But importing GE costs 6-10 s and its validation of
1M rows about 4 s, so a command that gates a batch could never answer in seconds. This module
reads the same JSON and computes, with numpy and pandas, the same verdict for the expectation
types the drafting writes. GE stays the authority: anything this module does not reproduce
exactly (an unknown type or argument, a column of Python objects, a partition with holdouts)
raises `NotNative` and the gate runs real GE on the batch instead, never passes it silently;
a parity test runs both on every bad batch of the gate battery and on real months; and
the full GE result and Data Docs are still produced, off the critical path
(`tasks/data/data_docs.py`).

Results follow GE's BASIC format, and for failed checks its SUMMARY with offending rows:
`unexpected_percent` over non-null values (over all rows for not-null and compound checks),
`mostly` vacuously true with no values, the first five unexpected values as examples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.batches import period_bounds
from tasks.core.config import PerennialConfig
from tasks.data.expectations import (
    EXAMPLE_ROWS,
    EXAMPLES,
    RANGE_RULE,
    Outcome,
    _plain,
    range_message,
    suite_path,
)


class NotNative(Exception):
    """An expectation (or a column) this module does not reproduce exactly: GE must decide."""


# Arguments each type may carry (besides bookkeeping GE adds); any other one means GE decides.
COMMON = {"column", "mostly", "result_format", "catch_exceptions", "meta", "notes"}
ALLOWED = {
    "expect_table_columns_to_match_set": {"column_set", "exact_match", "result_format", "meta"},
    "expect_table_row_count_to_be_between": {
        "min_value",
        "max_value",
        "strict_min",
        "strict_max",
        "result_format",
    },
    "expect_column_values_to_not_be_null": COMMON,
    "expect_column_values_to_be_between": COMMON
    | {"min_value", "max_value", "strict_min", "strict_max"},
    "expect_column_values_to_be_in_set": COMMON | {"value_set"},
    "expect_column_values_to_be_in_type_list": COMMON | {"type_list"},
    "expect_column_values_to_be_of_type": COMMON | {"type_"},
    "expect_column_values_to_be_unique": COMMON,
    "expect_compound_columns_to_be_unique": {"column_list", "mostly", "result_format"},
    "expect_column_kl_divergence_to_be_less_than": {
        "column",
        "partition_object",
        "threshold",
        "result_format",
    },
}
# Dtype names a type list may hold that compare one to one with pandas' dtype names.
SAME_TYPE = "Column values, min_value, and max_value must either be None or of the same type."
NUMERIC_DTYPES = {
    *(f"{kind}{bits}" for kind in ("int", "uint", "float") for bits in (8, 16, 32, 64)),
    *(f"{kind}{bits}" for kind in ("Int", "UInt", "Float") for bits in (8, 16, 32, 64)),
}


@lru_cache(maxsize=8)
def _suite_json(path: str, modified_ns: int) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


def load_suite(config: PerennialConfig) -> dict[str, Any]:
    """The suite's JSON, read again only when the file changes."""
    path = suite_path(config)
    return _suite_json(str(path), path.stat().st_mtime_ns)


def evaluate_suite(frame: pd.DataFrame, config: PerennialConfig, batch: str) -> list[Outcome]:
    """Every expectation of the suite on the typed frame, in suite order; `NotNative` if any
    one needs GE. Severities are the suite's (the caller applies the YAML's overrides)."""
    suite = load_suite(config)
    start, end = period_bounds(batch, config.time)
    parameters = {"batch_start": start.tz_convert("UTC"), "batch_end": end.tz_convert("UTC")}
    specs = [_spec(item, parameters) for item in suite.get("expectations", [])]
    outcomes = [_check(frame, kind, kwargs, severity) for kind, kwargs, severity in specs]
    reference = list((suite.get("meta") or {}).get("reference_batches") or [])
    for (kind, kwargs, _), outcome in zip(specs, outcomes, strict=True):
        if not outcome.success and kind == RANGE_RULE and outcome.error is None:
            outcome.message = range_message(outcome, kwargs, frame, config, reference, batch)
    return outcomes


def _spec(item: dict[str, Any], parameters: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    kind = str(item.get("type"))
    kwargs = dict(item.get("kwargs") or {})
    if kind not in ALLOWED:
        raise NotNative(f"{kind} is not evaluated natively")
    if set(kwargs) - ALLOWED[kind] or item.get("rendered_content"):
        raise NotNative(f"{kind} with arguments {sorted(set(kwargs) - ALLOWED[kind])}")
    for name, value in kwargs.items():
        if isinstance(value, dict) and set(value) == {"$PARAMETER"}:
            if value["$PARAMETER"] not in parameters:
                raise NotNative(f"{kind}: unknown parameter {value['$PARAMETER']}")
            kwargs[name] = parameters[value["$PARAMETER"]]
    return kind, kwargs, str(item.get("severity") or "critical")


def _check(frame: pd.DataFrame, kind: str, kwargs: dict[str, Any], severity: str) -> Outcome:
    columns = kwargs.get("column_list") or ([kwargs["column"]] if "column" in kwargs else [])
    outcome = Outcome(kind, ", ".join(columns) or None, severity, False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:  # GE's own words for a missing column
        outcome.error = f'Error: The column "{missing[0]}" in BatchData does not exist.'
        return outcome
    CHECKS[kind](frame, kwargs, outcome)
    return outcome


# -- table checks ------------------------------------------------------------------------------


def _columns_match(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    actual, expected = list(frame.columns), set(kwargs["column_set"] or [])
    missing = sorted(expected - set(actual))
    unexpected = sorted(set(actual) - expected)
    exact = kwargs.get("exact_match", True)
    outcome.success = not missing and (not unexpected or exact is False)
    outcome.observed = sorted(actual)
    if not outcome.success:
        outcome.examples = [f"missing {c}" for c in missing]
        outcome.examples += [f"unexpected {c}" for c in unexpected if exact is not False]


def _row_count(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    rows = len(frame)
    outcome.observed = rows
    outcome.success = _within(
        rows,
        kwargs.get("min_value"),
        kwargs.get("max_value"),
        kwargs.get("strict_min", False),
        kwargs.get("strict_max", False),
    )


def _within(value: Any, low: Any, high: Any, strict_low: bool, strict_high: bool) -> Any:
    """`value` (a number or an array) inside [low, high], each bound optional or strict."""
    inside = np.ones(len(value), dtype=bool) if isinstance(value, pd.Series) else True
    if low is not None:
        inside = inside & ((value > low) if strict_low else (value >= low))
    if high is not None:
        inside = inside & ((value < high) if strict_high else (value <= high))
    return inside


# -- column map checks -------------------------------------------------------------------------


def _map_result(
    frame: pd.DataFrame,
    outcome: Outcome,
    unexpected: np.ndarray,
    considered: int,
    mostly: float | None,
    values: pd.Series | pd.DataFrame,
) -> None:
    """GE's column-map result: count, share of the values considered, `mostly`, examples and
    offending rows (the rows only for a failure, as the gate asks GE for them)."""
    count = int(unexpected.sum())
    outcome.unexpected_count = count
    outcome.unexpected_percent = count / considered * 100 if considered else None
    if considered == 0:
        outcome.success = True  # vacuously, as GE
    else:
        ratio = (considered - count) / considered
        outcome.success = count == 0 if mostly is None else ratio >= mostly
    if count:
        picked = values[unexpected]
        if isinstance(picked, pd.DataFrame):
            outcome.examples = _plain(picked.head(EXAMPLES).to_dict("records"))
        else:
            outcome.examples = [_plain(v) for v in picked.head(EXAMPLES).tolist()]
        if not outcome.success:
            outcome.rows = _plain(frame[unexpected].head(EXAMPLE_ROWS).to_dict("records"))


def _not_null(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    column = frame[kwargs["column"]]
    nulls = column.isna().to_numpy()
    _map_result(frame, outcome, nulls, len(column), kwargs.get("mostly"), column)


def _nonnull(frame: pd.DataFrame, kwargs: dict[str, Any]) -> tuple[pd.Series, np.ndarray]:
    column = frame[kwargs["column"]]
    if column.dtype == object:  # per-value Python types: GE's rules are its own
        raise NotNative(f"column {kwargs['column']} holds Python objects")
    return column, column.notna().to_numpy()


def _between(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    column, present = _nonnull(frame, kwargs)
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    bound = low if low is not None else high
    if _kind(column) == "text" and isinstance(bound, (int, float)):
        outcome.error = SAME_TYPE  # GE's words for text checked against numbers
        return
    if _kind(column) != ("time" if isinstance(bound, pd.Timestamp) else "number"):
        raise NotNative(f"range of {bound!r} on a {column.dtype} column")
    inside = _within(
        column,
        low,
        high,
        bool(kwargs.get("strict_min", False)),
        bool(kwargs.get("strict_max", False)),
    )
    unexpected = present & ~np.asarray(inside, dtype=bool)
    _map_result(frame, outcome, unexpected, int(present.sum()), kwargs.get("mostly"), column)


def _kind(column: pd.Series) -> str:
    """What GE compares a column as: numbers, tz-aware times, text, or something else."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "other"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "time"
    return "text" if dtype.type is str else "other"


def _in_set(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    column, present = _nonnull(frame, kwargs)
    known = column.isin(list(kwargs["value_set"] or [])).to_numpy()
    unexpected = present & ~known
    _map_result(frame, outcome, unexpected, int(present.sum()), kwargs.get("mostly"), column)


def _unique(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    column, present = _nonnull(frame, kwargs)
    repeated = column.duplicated(keep=False).to_numpy() & present
    _map_result(frame, outcome, repeated, int(present.sum()), kwargs.get("mostly"), column)


def _compound_unique(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    keys = frame[list(kwargs["column_list"])]
    considered = ~keys.isna().all(axis=1).to_numpy()  # GE ignores rows with every key missing
    repeated = _repeated(keys) & considered
    _map_result(frame, outcome, repeated, int(considered.sum()), kwargs.get("mostly"), keys)


def _repeated(keys: pd.DataFrame) -> np.ndarray:
    """`keys.duplicated(keep=False)` (missing values equal to each other, as there), three
    times faster: each column's codes folded into one integer key when they fit."""
    combined, size = np.zeros(len(keys), dtype=np.int64), 1
    for name in keys.columns:
        codes, uniques = pd.factorize(keys[name], use_na_sentinel=False)
        size *= max(len(uniques), 1)
        if size >= 2**62:
            return np.asarray(keys.duplicated(keep=False).to_numpy(), dtype=bool)
        combined = combined * len(uniques) + codes
    return np.asarray(pd.Series(combined).duplicated(keep=False).to_numpy(), dtype=bool)


# -- type checks (GE checks the column's dtype unless it holds Python objects) ----------------


def _type_list(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    column, _ = _nonnull(frame, kwargs)
    names = set(kwargs["type_list"] or [])
    if not names <= NUMERIC_DTYPES:
        raise NotNative(f"type list {sorted(names - NUMERIC_DTYPES)}")
    outcome.observed = column.dtype.type.__name__
    outcome.success = column.dtype.name in names


def _of_type(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    column, _ = _nonnull(frame, kwargs)
    if kwargs["type_"] != "str":
        raise NotNative(f"type {kwargs['type_']}")
    outcome.observed = column.dtype.type.__name__
    outcome.success = column.dtype.type is str  # pandas 3 text


# -- distribution ------------------------------------------------------------------------------


def _kl_divergence(frame: pd.DataFrame, kwargs: dict[str, Any], outcome: Outcome) -> None:
    """KL(observed || expected) as GE computes it (scipy's entropy, both normalised), for
    partitions without holdouts: numeric bins open at both ends, or category values."""
    column, present = _nonnull(frame, kwargs)
    partition, threshold = kwargs["partition_object"], kwargs.get("threshold")
    values = column[present]
    if values.empty:  # GE divides by zero values: no divergence, and the check fails
        outcome.observed, outcome.success = None, threshold is None
        return
    expected = np.asarray(partition["weights"], dtype=float)
    if "bins" in partition:
        bins = np.asarray(partition["bins"], dtype=float)
        if not (np.isneginf(bins[0]) and np.isposinf(bins[-1])) or "tail_weights" in partition:
            raise NotNative("KL divergence over bins with finite ends")
        if _kind(column) == "text":
            outcome.error = f"Invalid comparison between dtype={column.dtype} and float"
            return
        if _kind(column) != "number":
            raise NotNative(f"KL divergence over bins of a {column.dtype} column")
        counts, _ = np.histogram(values.to_numpy(dtype=float), bins)
        observed = counts / len(values)
    else:
        shares = values.value_counts() / len(values)
        categories = list(dict.fromkeys([*partition["values"], *shares.index]))
        table = pd.Series(expected, index=partition["values"]).reindex(categories)
        observed = shares.reindex(categories).fillna(0.0).to_numpy()
        expected = table.fillna(0.0).to_numpy()  # an unseen category: weight 0, KL infinite
    divergence = _entropy(observed, expected)
    finite = bool(np.isfinite(divergence))
    outcome.observed = divergence if finite else None
    outcome.success = True if threshold is None else bool(divergence <= threshold)


def _entropy(observed: np.ndarray, expected: np.ndarray) -> float:
    """scipy.stats.entropy(observed, expected) without importing scipy."""
    p = observed / observed.sum() if observed.sum() else observed
    q = expected / expected.sum() if expected.sum() else expected
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / q), 0.0)
    return float(np.sum(terms))


CHECKS: dict[str, Callable[[pd.DataFrame, dict[str, Any], Outcome], None]] = {
    "expect_table_columns_to_match_set": _columns_match,
    "expect_table_row_count_to_be_between": _row_count,
    "expect_column_values_to_not_be_null": _not_null,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_be_in_type_list": _type_list,
    "expect_column_values_to_be_of_type": _of_type,
    "expect_column_values_to_be_unique": _unique,
    "expect_compound_columns_to_be_unique": _compound_unique,
    "expect_column_kl_divergence_to_be_less_than": _kl_divergence,
}
