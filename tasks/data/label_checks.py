"""The gate's reference checks of the label, by `target.task` (tasks/data/reference_checks.py
runs them beside the features' and turns each measure into an outcome):

- binary: the positive rate against the reference batches' range, by log-odds;
- regression: the label checked as a numeric feature is (its median, and its share of values far
  outside the reference's bulk) and its spread (1st-99th percentile span), which a change of
  units moves by orders of magnitude while every value stays plausible;
- multiclass: each class's share against the reference batches' range, by log-odds, and the
  labels outside `target.classes` (no class index): a refusal that names the column, the count
  and share and a few of the values, never a crash further on.

Labels are read only from labelled rows, and only when there are `MIN_LABELLED_ROWS` of them
(labels may not have arrived yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.data.reference_stats import (
    bulk,
    logit,
    numbers,
    outside,
    rounded,
    scale,
    sigmoid,
    value_range,
)

LABEL_RATE = "reference_label_rate"
LABEL_MEDIAN, LABEL_OUTLIERS, LABEL_SPREAD = (
    "reference_label_median",
    "reference_label_outliers",
    "reference_label_spread",
)
CLASS_SHARE, UNKNOWN_CLASS = "reference_class_share", "reference_unknown_class"

LABEL_LOGIT_MARGIN = 1.5  # a positive rate or class share may leave its range by 1.5 log-odds
MEDIAN_MARGIN = 0.15  # as a feature's: 15 % of the reference scale
OUTLIER_MARGIN = 0.001  # share of far values allowed above the reference's worst batch
SPREAD_FACTOR = 2.0  # the spread may be half the reference's smallest, or twice its largest
MIN_LABELLED_ROWS = 100  # fewer labelled rows: no label check (labels may not have arrived)
EXAMPLES = 3


@dataclass
class Measure:
    """One statistic of the batch's labels against the reference's: the rule, the value, the
    allowed range and the reference batches' own range; `location` marks a median (a warning
    when the reference has too few batches to show its range); `message` replaces the generic
    sentence of a failure."""

    rule: str
    column: str
    value: float
    allowed: tuple[float, float]
    seen: tuple[float, float]
    statistic: str
    warn_only: bool = False
    location: bool = False
    message: str | None = None


def labels_of(frame: pd.DataFrame, config: PerennialConfig) -> pd.Series | None:
    """The labels of the labelled rows, None with too few of them or a label column of the
    wrong type (the suite's type check reports that)."""
    from tasks.data.features import label

    target = config.target.column
    if target not in frame.columns:
        return None
    labelled = frame[frame[target].notna()]
    if len(labelled) < MIN_LABELLED_ROWS:
        return None
    try:
        return label(labelled, config)
    except (TypeError, ValueError, KeyError):
        return None


# -- drafting --------------------------------------------------------------------------------


def draft_label(reference: list[pd.DataFrame], config: PerennialConfig) -> dict[str, Any]:
    """The label's record in the reference profile (empty when no batch has enough labels)."""
    found = [y for f in reference if (y := labels_of(f, config)) is not None]
    if not found:
        return {}
    task = config.target.task
    if task == "binary":
        return {"positive_rate": value_range(float(y.mean()) for y in found)}
    if task == "multiclass":
        shares = [_class_shares(y.to_numpy(), config) for y in found]
        return {
            "task": task,
            "class_share": [value_range(s[k] for s in shares) for k in range(len(shares[0]) - 1)],
            "unknown_share": value_range(s[-1] for s in shares),
        }
    pooled = numbers(pd.concat(found, ignore_index=True))
    spread = scale(pooled)
    low, high = bulk(pooled, spread)
    return {
        "task": task,
        "median": value_range(numbers(y).median() for y in found),
        "scale": spread,
        "bulk": [low, high],
        "outlier_share": value_range(outside(numbers(y), low, high) for y in found),
        "spread": value_range(scale(numbers(y)) for y in found),
    }


def _class_shares(labels: np.ndarray, config: PerennialConfig) -> list[float]:
    """Share of each class, then of labels outside the classes (index -1)."""
    k = len(config.target.classes or [])
    index = np.where(labels < 0, k, labels).astype(np.int64)
    counts = np.bincount(index, minlength=k + 1)[: k + 1]
    return [float(c) / max(len(labels), 1) for c in counts]


# -- the gate --------------------------------------------------------------------------------


def label_measures(
    frame: pd.DataFrame, recorded: dict[str, Any], config: PerennialConfig, margin: float
) -> list[Measure]:
    """The batch's label measures against the profile's record of the reference labels."""
    labels = labels_of(frame, config) if recorded else None
    if labels is None:
        return []
    column, task = config.target.column, config.target.task
    if task == "binary" and "positive_rate" in recorded:
        rate = float(labels.mean())
        return [_share(LABEL_RATE, column, rate, recorded["positive_rate"], margin, "label")]
    if task == "multiclass" and recorded.get("task") == task:
        return _class_measures(frame, labels.to_numpy(), recorded, config, margin)
    if task == "regression" and recorded.get("task") == task:
        return _value_measures(numbers(labels), recorded, config, margin)
    return []  # a profile drafted for another task: `validate --profile` again


def _share(
    rule: str, column: str, value: float, seen: list[float], margin: float, what: str
) -> Measure:
    room = LABEL_LOGIT_MARGIN * margin
    allowed = (sigmoid(logit(seen[0]) - room), sigmoid(logit(seen[1]) + room))
    statistic = f"{what} positive rate" if what == "label" else what
    return Measure(rule, column, value, allowed, (seen[0], seen[1]), statistic)


def _class_measures(
    frame: pd.DataFrame,
    labels: np.ndarray,
    recorded: dict[str, Any],
    config: PerennialConfig,
    margin: float,
) -> list[Measure]:
    column, classes = config.target.column, config.target.classes or []
    shares = _class_shares(labels, config)
    found = [
        _share(CLASS_SHARE, column, shares[k], seen, margin, f"share of class {classes[k]}")
        for k, seen in enumerate(recorded["class_share"])
    ]
    seen = recorded["unknown_share"]
    unknown = Measure(
        UNKNOWN_CLASS,
        column,
        shares[-1],
        (0.0, seen[1] + OUTLIER_MARGIN * margin),
        (seen[0], seen[1]),
        "share of labels outside target.classes",
    )
    count = int((labels < 0).sum())
    if count:
        rows = frame[frame[column].notna()]
        values = pd.Series(rows[column].to_numpy()[labels < 0]).astype(str).unique()
        shown = ", ".join(repr(v) for v in values[:EXAMPLES])
        unknown.message = (
            f"{column}: {count} labelled rows ({shares[-1]:.2%}) hold a class not in "
            f"target.classes {classes} (e.g. {shown}); the reference batches held "
            f"{seen[1]:.2%} at most. If it is a new class, add it to target.classes and "
            "retrain; otherwise correct the batch and land it again"
        )
    return [*found, unknown]


def _value_measures(
    values: pd.Series, recorded: dict[str, Any], config: PerennialConfig, margin: float
) -> list[Measure]:
    column = config.target.column
    low, high = recorded["bulk"]
    seen_outliers, seen_median, seen_spread = (
        recorded["outlier_share"],
        recorded["median"],
        recorded["spread"],
    )
    room = MEDIAN_MARGIN * margin * recorded["scale"]
    factor = SPREAD_FACTOR**margin
    return [
        Measure(
            LABEL_OUTLIERS,
            column,
            outside(values, low, high),
            (0.0, seen_outliers[1] + OUTLIER_MARGIN * margin),
            (seen_outliers[0], seen_outliers[1]),
            f"share of labels outside [{low:g}, {high:g}]",
        ),
        Measure(
            LABEL_MEDIAN,
            column,
            float(values.median()),
            (seen_median[0] - room, seen_median[1] + room),
            (seen_median[0], seen_median[1]),
            "label median",
            warn_only=column in config.validation.seasonal,
            location=True,
        ),
        Measure(
            LABEL_SPREAD,
            column,
            scale(values),
            (rounded(seen_spread[0] / factor), rounded(seen_spread[1] * factor)),
            (seen_spread[0], seen_spread[1]),
            "label spread (1st-99th percentile span)",
        ),
    ]
