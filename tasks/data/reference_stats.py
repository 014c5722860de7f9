"""The statistics the gate's reference checks compare (tasks/data/reference_checks.py for the
features, tasks/data/label_checks.py for the label): spread, bulk, share outside it, ranges
over reference batches, log-odds."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

OUTLIER_SCALES = 3.0  # "far outside": beyond the 1st/99th percentile by 3 reference scales


def numbers(column: pd.Series) -> pd.Series:
    return pd.to_numeric(column, errors="coerce").astype(float)


def scale(values: pd.Series) -> float:
    """The reference's spread: its 1st-99th percentile span, else its full span, else a tenth
    of its magnitude (a constant column), never zero."""
    values = values.dropna()
    span = float(values.quantile(0.99) - values.quantile(0.01))
    if span <= 0:
        span = float(values.max() - values.min())
    return span if span > 0 else max(abs(float(values.median())) * 0.1, 1e-9)


def bulk(values: pd.Series, spread: float) -> tuple[float, float]:
    """Values beyond the 1st/99th percentile by `OUTLIER_SCALES` scales (the full span of the
    reference if wider: heavy tails such as rain) are far outside; never across zero for a column
    the reference never had negative."""
    values = values.dropna()
    reach = OUTLIER_SCALES * max(spread, float(values.max() - values.min()))
    low = float(values.quantile(0.01)) - reach
    high = float(values.quantile(0.99)) + reach
    if float(values.min()) >= 0:
        low = max(low, 0.0)
    return rounded(low), rounded(high)


def outside(values: pd.Series, low: float, high: float) -> float:
    known = values.dropna()
    return float(((known < low) | (known > high)).mean()) if len(known) else 0.0


def value_range(values: Any) -> list[float]:
    known = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return [rounded(min(known)), rounded(max(known))] if known else [0.0, 0.0]


def rounded(value: float) -> float:
    return float(f"{float(value):.6g}")


def logit(share: float) -> float:
    share = min(max(share, 1e-4), 1 - 1e-4)
    return math.log(share / (1 - share))


def sigmoid(value: float) -> float:
    return 1 / (1 + math.exp(-value))
