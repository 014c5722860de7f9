"""Draft a dataset's expectation suite from reference batches (`perennial validate --profile`).

The draft is written to the GE file context as JSON, with the pandas data source and the
validation definition the gate runs; people then curate the JSON and review it like code.
Ranges are widened beyond what the reference shows (seasons change), by magnitude and never
across zero (a column never negative in the reference stays non-negative), category sets are checked
with `mostly`, the batch period is a run-time parameter, key columns
(`validation.key_columns`) must be present and unique together, and each feature's
distribution is compared with the reference's (KL divergence over stored reference bins) as a
warning: drift is reported, not blocked. The columns the target is computed from are checked for
type and null share like the features: a label column full of text would otherwise pass.
"""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.data.expectations import (
    BATCH_DEFINITION,
    DATASOURCE,
    NUMBER_TYPES,
    STRING_TYPE,
    suite_path,
    writable_context,
)
from tasks.data.parse import typed_frame
from tasks.data.personal_data import refuse_personal_data
from tasks.data.reference_checks import PROFILE_KEY, draft_profile

RANGE_MARGIN = 1.0  # widen numeric ranges by this share of the observed span on each side
ROW_COUNT_FACTOR = 3  # batches may hold up to this many times the largest reference batch
ROW_FLOOR_FACTOR = 0.25  # ... and at least this share of the smallest one
KL_BINS = 10  # reference quantile bins of a numeric feature's distribution
KL_THRESHOLD_FACTOR = 3  # warn above this many times the worst KL among reference batches
KL_THRESHOLD_FLOOR = 0.05
KL_MAX_VALUES = 200  # categorical features with more values are compared on the top ones
# A reference shorter than this has not seen every season: its ranges and category sets will
# flag normal values of the months it lacks. 11.5 months, not 12, so that 52 weekly batches
# (364 days) or 12 monthly ones whose data starts after midnight of the first day count as a year.
SEASON_DAYS = 350


def draft_expectations(reference: list[pd.DataFrame], config: PerennialConfig) -> list[Any]:
    from great_expectations.expectations.metadata_types import FailureSeverity

    import great_expectations.expectations as gxe

    frame = pd.concat(reference, ignore_index=True)
    time_column, spec = config.time.column, config.features
    drafted: list[Any] = [
        gxe.ExpectTableColumnsToMatchSet(column_set=list(frame.columns), exact_match=True),
        gxe.ExpectTableRowCountToBeBetween(
            min_value=max(
                config.validation.min_rows, int(ROW_FLOOR_FACTOR * min(len(f) for f in reference))
            ),
            max_value=ROW_COUNT_FACTOR * max(len(f) for f in reference),
        ),
        gxe.ExpectColumnValuesToNotBeNull(column=time_column),
        gxe.ExpectColumnValuesToBeBetween(
            column=time_column,
            min_value={"$PARAMETER": "batch_start"},
            max_value={"$PARAMETER": "batch_end"},
            strict_max=True,
        ),
    ]
    features = {*spec.numeric, *spec.categorical}
    for column in target_columns(config, list(frame.columns)):
        if column not in features:
            drafted += [
                _type_expectation(column, frame[column]),
                # Null labels are normal (cancelled flights, outcomes not known yet): a warning.
                gxe.ExpectColumnValuesToNotBeNull(
                    column=column, mostly=_mostly(frame[column]), severity=FailureSeverity.WARNING
                ),
            ]
    keys = config.validation.key_columns
    if keys:
        drafted += [gxe.ExpectColumnValuesToNotBeNull(column=key) for key in keys]
        # GX refuses a compound expectation over one column: one key is a plain unique column.
        if len(keys) == 1:
            drafted.append(gxe.ExpectColumnValuesToBeUnique(column=keys[0]))
        else:
            drafted.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(keys)))
    for column in spec.numeric:
        values = pd.to_numeric(frame[column], errors="coerce")
        low, high = widened_range(float(values.min()), float(values.max()))
        drafted += [
            gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMBER_TYPES),
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=low,
                max_value=high,
                mostly=0.99,
            ),
            gxe.ExpectColumnValuesToNotBeNull(
                column=column, mostly=_mostly(values), severity=FailureSeverity.WARNING
            ),
        ]
    for column in spec.categorical:
        seen = sorted(str(v) for v in frame[column].dropna().unique())
        drafted += [
            # pandas 3 reads text as its `str` dtype; GE reports it by that name.
            gxe.ExpectColumnValuesToBeOfType(column=column, type_=STRING_TYPE),
            gxe.ExpectColumnValuesToNotBeNull(column=column, mostly=_mostly(frame[column])),
            gxe.ExpectColumnValuesToBeInSet(column=column, value_set=seen, mostly=0.95),
        ]
    # Seasonal columns move every month against a reference shorter than a year: their median
    # warns (tasks/data/reference_checks.py); a KL warning too would say the same thing twice.
    seasonal = set(config.validation.seasonal)
    drafted += [
        _kl_expectation(reference, column, numeric=True)
        for column in spec.numeric
        if column not in seasonal
    ]
    drafted += [_kl_expectation(reference, column, numeric=False) for column in spec.categorical]
    return drafted


def widened_range(low: float, high: float) -> tuple[float, float]:
    """The reference's [low, high] widened by `RANGE_MARGIN` of its magnitude on each side, but
    never across zero: a sign the reference always kept (distances, counts, prices) stays a rule,
    so a batch of negative distances fails instead of falling inside a range widened past 0."""
    margin = RANGE_MARGIN * max(high - low, abs(high), abs(low), 1.0)
    lower = low - margin if low < 0 else max(low - margin, 0.0)
    upper = high + margin if high > 0 else min(high + margin, 0.0)
    return round(lower, 3), round(upper, 3)


def target_columns(config: PerennialConfig, columns: list[str]) -> list[str]:
    """The raw columns the label is computed from: the target column and every column the
    target expression names (read from its syntax tree, never evaluated)."""
    names = [config.target.column]
    with contextlib.suppress(SyntaxError):
        tree = ast.parse(config.target.expression or config.target.column, mode="eval")
        names += [node.id for node in ast.walk(tree) if isinstance(node, ast.Name)]
    return [name for name in dict.fromkeys(names) if name in columns]


def _type_expectation(column: str, reference: pd.Series) -> Any:
    """Numbers stay numbers and text stays text, as in the reference."""
    import great_expectations.expectations as gxe

    if pd.api.types.is_numeric_dtype(reference):
        return gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMBER_TYPES)
    return gxe.ExpectColumnValuesToBeOfType(column=column, type_=STRING_TYPE)


def season_warning(reference: list[pd.DataFrame], config: PerennialConfig) -> str | None:
    """A one-line warning when the reference spans less than a year of data (see `SEASON_DAYS`),
    or None. Every time-derived feature (month, day of year) and most measured ones (weather,
    traffic) follow the annual cycle, whatever the batch period."""
    column = config.time.column
    times = pd.concat([typed_frame(f, config)[column] for f in reference]).dropna()
    if times.empty:
        return None
    first, last = times.min(), times.max()
    days = (last - first).total_seconds() / 86400
    if days >= SEASON_DAYS:
        return None
    zone = config.time.timezone
    span = f"{first.tz_convert(zone):%Y-%m-%d}..{last.tz_convert(zone):%Y-%m-%d}"
    return (
        f"warning: the reference spans {days / 30.44:.1f} months ({span}),"
        " less than a year: values normal in the seasons it lacks will fail the drafted ranges "
        "and sets; profile again over 12 months of batches when you have them"
    )


def _kl_expectation(reference: list[pd.DataFrame], column: str, numeric: bool) -> Any:
    """A warning when a batch's distribution of `column` moves away from the reference's:
    pooled reference bins (open-ended, so no value falls outside) and a threshold set well above
    the divergence of each reference batch from the pool."""
    from great_expectations.expectations.metadata_types import FailureSeverity

    import great_expectations.expectations as gxe

    pooled = pd.concat([f[column] for f in reference], ignore_index=True).dropna()
    if numeric:
        values = pd.to_numeric(pooled, errors="coerce").dropna().astype(float)
        inner = sorted(set(np.quantile(values, np.linspace(0, 1, KL_BINS + 1)[1:-1]).round(6)))
        edges = [-np.inf, *inner, np.inf]
        partition = {"bins": edges, "weights": _bin_weights(values, edges)}
        batches = [
            _bin_weights(pd.to_numeric(f[column], errors="coerce"), edges) for f in reference
        ]
    else:
        shares = pooled.astype(str).value_counts(normalize=True).head(KL_MAX_VALUES)
        shares = shares / shares.sum()
        partition = {"values": list(shares.index), "weights": [float(w) for w in shares]}
        batches = [
            f[column]
            .dropna()
            .astype(str)
            .value_counts(normalize=True)
            .reindex(shares.index)
            .fillna(0.0)
            .tolist()
            for f in reference
        ]
    worst = max(_kl(partition["weights"], observed) for observed in batches)
    threshold = round(max(KL_THRESHOLD_FLOOR, KL_THRESHOLD_FACTOR * worst), 4)
    return gxe.ExpectColumnKLDivergenceToBeLessThan(
        column=column,
        partition_object=partition,
        threshold=threshold,
        severity=FailureSeverity.WARNING,
    )


def _bin_weights(values: pd.Series, edges: list[float]) -> list[float]:
    counts, _ = np.histogram(values.dropna().astype(float), bins=np.asarray(edges))
    return [float(c) / max(int(counts.sum()), 1) for c in counts]


def _kl(expected: list[float], observed: list[float]) -> float:
    """KL(expected || observed), the quantity GE's expectation computes."""
    p, q = np.asarray(expected, float), np.asarray(observed, float)
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))


def _mostly(values: pd.Series) -> float:
    """Allowed non-null share: twice the reference's null share, plus one point, as slack."""
    null_share = float(values.isna().mean())
    return round(max(0.0, 1.0 - 2 * null_share - 0.01), 3)


def write_suite(
    reference: list[pd.DataFrame], config: PerennialConfig, batches: list[str] | None = None
) -> Path:
    """Write the drafted suite, the data source and the validation definition; returns the JSON.
    The reference `batches` go into the suite's meta, for the gate's messages."""
    from great_expectations.exceptions import DataContextError

    import great_expectations as gx

    gx_root = Path(config.validation.gx_root)
    context = writable_context(gx_root)
    name = config.validation.suite
    typed = [typed_frame(frame, config) for frame in reference]
    with contextlib.suppress(DataContextError):
        context.suites.delete(name)
    meta: dict[str, Any] = {"drafted_by": "perennial validate --profile", "dataset": config.dataset}
    meta[PROFILE_KEY] = draft_profile(typed, config)
    if batches:
        meta["reference_batches"] = list(batches)
    suite = gx.ExpectationSuite(name=name, meta=meta)
    for expectation in draft_expectations(typed, config):
        suite.add_expectation(expectation)
    suite = context.suites.add(suite)
    try:
        source = context.data_sources.get(DATASOURCE)
    except KeyError:
        source = context.data_sources.add_pandas(name=DATASOURCE)
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name=name)
    try:
        definition = asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    with contextlib.suppress(DataContextError):
        context.validation_definitions.delete(name)
    context.validation_definitions.add(
        gx.ValidationDefinition(name=name, data=definition, suite=suite)
    )
    return suite_path(config)


def profile_landed(storage: Any, config: PerennialConfig, batches: list[str]) -> Path:
    """Draft the suite from landed (raw) batches."""
    return profile_reference(storage, config, batches)[0]


def profile_reference(
    storage: Any, config: PerennialConfig, batches: list[str]
) -> tuple[Path, str | None]:
    """Draft the suite from landed (raw) batches, each read through the file checks (bounded
    decompression included); returns the suite's JSON and the season warning, if any."""
    from tasks.data.filecheck import plain_bytes
    from tasks.data.ingest import landed_record
    from tasks.data.raw_files import raw_extension, read_raw

    frames = []
    for batch in batches:
        record = landed_record(storage, config, batch)
        if record is None:
            raise FileNotFoundError(f"batch {batch} of {config.dataset} has not been landed")
        ext = raw_extension(record.key)
        plain = plain_bytes(storage.read_bytes(record.key), record.key, ext, config.validation)
        frames.append(read_raw(plain, ".parquet" if ext == ".parquet" else ".csv"))
    refuse_personal_data(frames, config)  # a drafted value set would copy them into the suite
    path = write_suite(frames, config, batches)
    return path, season_warning(frames, config)
