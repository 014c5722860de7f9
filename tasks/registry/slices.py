"""Slices: how a model does on each value of the `promotion.slices` columns, and the gap between
its best and worst slice in the primary metric. A binary model's row: AUC, positive rate, mean
score, expected calibration error, rows; another task's: its primary metric (column named after
it, e.g. `rmse`, `macro_auc`), mean prediction and mean label (regression), rows. The worst-slice
guard reads the primary metric of the worst slice (`tasks.registry.evaluate`); these figures are
what a person reads on the version and in its model card."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.metrics import TaskKind, default_primary, metric
from tasks.registry.metrics import auc

CALIBRATION_BINS = 10


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """Sum over equal-width score bins of (bin rows / rows) * |label rate - mean score|.
    Bin k holds scores in [k/bins, (k+1)/bins); a score of exactly 1 goes to the last bin."""
    if len(y) == 0:
        return float("nan")
    labels = np.asarray(y, dtype=np.float64)
    scores = np.asarray(p, dtype=np.float64)
    which = np.minimum((scores * bins).astype(np.intp), bins - 1)
    error = 0.0
    for k in np.unique(which):
        inside = which == k
        error += inside.mean() * abs(labels[inside].mean() - scores[inside].mean())
    return float(error)


def slice_key(task: TaskKind, primary: str) -> str:
    """The slice table's column of the primary metric: `auc` for a binary model (as its tables
    and tags have always said), else the metric's name."""
    return "auc" if primary == "roc_auc" else primary


def _binary_row(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    return {
        "auc": auc(labels, scores),
        "positive_rate": float(labels.mean()),
        "mean_score": float(scores.mean()),
        "ece": expected_calibration_error(labels, scores),
    }


def slice_metrics(
    x: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    slices: Sequence[str],
    min_rows: int,
    task: TaskKind = "binary",
    primary: str | None = None,
) -> list[dict[str, Any]]:
    """One row per slice (`carrier=UA`) with at least `min_rows` rows (see the module's
    docstring for its columns). A metric undefined on a slice (one class only) is NaN."""
    labels = np.asarray(y)
    judge = metric(primary or default_primary(task))
    fill = {"binary": 0.5, "multiclass": 0.0, "regression": 0.0}[task]
    scores = np.nan_to_num(np.asarray(p, dtype=np.float64), nan=fill, posinf=1.0, neginf=0.0)
    found = []
    for column in slices:
        values = x[column].astype("object").to_numpy()
        for value in pd.unique(values[pd.notna(values)]):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            row: dict[str, Any] = {"slice": f"{column}={value}"}
            if task == "binary" and judge.name == "roc_auc":
                row |= _binary_row(labels[mask], scores[mask])
            else:
                row[judge.name] = judge.compute(labels[mask], scores[mask])
                if task == "regression":
                    row["mean_prediction"] = float(scores[mask].mean())
                    row["mean_label"] = float(labels[mask].mean())
            found.append(row | {"rows": int(mask.sum())})
    return found


def aucs_of(table: Sequence[dict[str, Any]], key: str = "auc") -> dict[str, float]:
    """Slice -> its `key` metric (AUC by default), for the slices that have one."""
    return {row["slice"]: row[key] for row in table if not np.isnan(row[key])}


def slice_auc_gap(table: Sequence[dict[str, Any]], key: str = "auc") -> float:
    """Best minus worst slice in the `key` metric (AUC by default): NaN with fewer than two
    slices that have one."""
    values = list(aucs_of(table, key).values())
    return float(max(values) - min(values)) if len(values) >= 2 else float("nan")


def slices_csv(table: Sequence[dict[str, Any]]) -> str:
    binary = ["slice", "auc", "positive_rate", "mean_score", "ece", "rows"]
    columns = list(table[0]) if table and "auc" not in table[0] else binary
    return pd.DataFrame(list(table), columns=columns).to_csv(index=False)


def slice_aucs(
    x: pd.DataFrame,
    y: np.ndarray,
    p: np.ndarray,
    slices: Sequence[str],
    min_rows: int,
    task: TaskKind = "binary",
    primary: str | None = None,
) -> dict[str, float]:
    """The primary metric (AUC for binary) per value of each slice column (`carrier=UA`), for
    slices big enough to judge (and holding both classes when it is an AUC)."""
    table = slice_metrics(x, y, p, slices, min_rows, task, primary)
    return aucs_of(table, slice_key(task, primary or default_primary(task)))
