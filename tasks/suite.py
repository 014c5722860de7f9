"""Draft a dataset's expectation suite from reference batches (`perennial validate --profile`).

The draft is written to the GE file context as JSON, with the pandas data source and the
validation definition the gate runs; people then curate the JSON and review it like code.
Ranges are widened beyond what the reference shows (seasons change), category sets are checked
with `mostly`, the batch period is a run-time parameter, key columns
(`validation.key_columns`) must be present and unique together, and each feature's
distribution is compared with the reference's (KL divergence over stored reference bins) as a
warning: drift is reported, not blocked.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import PerennialConfig
from tasks.expectations import (
    BATCH_DEFINITION,
    DATASOURCE,
    NUMBER_TYPES,
    STRING_TYPE,
    suite_path,
    writable_context,
)
from tasks.validate import typed_frame

RANGE_MARGIN = 1.0  # widen numeric ranges by this share of the observed span on each side
ROW_COUNT_FACTOR = 3  # batches may hold up to this many times the largest reference batch
ROW_FLOOR_FACTOR = 0.25  # ... and at least this share of the smallest one
KL_BINS = 10  # reference quantile bins of a numeric feature's distribution
KL_THRESHOLD_FACTOR = 3  # warn above this many times the worst KL among reference batches
KL_THRESHOLD_FLOOR = 0.05
KL_MAX_VALUES = 200  # categorical features with more values are compared on the top ones


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
        gxe.ExpectColumnValuesToNotBeNull(
            column=config.target.column,
            mostly=_mostly(frame[config.target.column]),
            severity=FailureSeverity.WARNING,
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
        low, high = float(values.min()), float(values.max())
        margin = RANGE_MARGIN * max(high - low, abs(high), 1.0)
        drafted += [
            gxe.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMBER_TYPES),
            gxe.ExpectColumnValuesToBeBetween(
                column=column,
                min_value=round(low - margin, 3),
                max_value=round(high + margin, 3),
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
    drafted += [_kl_expectation(reference, column, numeric=True) for column in spec.numeric]
    drafted += [_kl_expectation(reference, column, numeric=False) for column in spec.categorical]
    return drafted


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


def write_suite(reference: list[pd.DataFrame], config: PerennialConfig) -> Path:
    """Write the drafted suite, the data source and the validation definition; returns the JSON."""
    from great_expectations.exceptions import DataContextError

    import great_expectations as gx

    gx_root = Path(config.validation.gx_root)
    context = writable_context(gx_root)
    name = config.validation.suite
    typed = [typed_frame(frame, config) for frame in reference]
    with contextlib.suppress(DataContextError):
        context.suites.delete(name)
    suite = gx.ExpectationSuite(
        name=name, meta={"drafted_by": "perennial validate --profile", "dataset": config.dataset}
    )
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
    from tasks.ingest import landed_record, raw_extension, read_raw

    frames = []
    for batch in batches:
        record = landed_record(storage, config, batch)
        if record is None:
            raise FileNotFoundError(f"batch {batch} of {config.dataset} has not been landed")
        frames.append(read_raw(storage.read_bytes(record.key), raw_extension(record.key)))
    return write_suite(frames, config)
