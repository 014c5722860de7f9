"""Slices: how a model does on each value of the `promotion.slices` columns (AUC, positive
rate, mean score, expected calibration error, rows), and the gap between its best and worst
slice AUC. The promotion guard keeps using the worst-slice AUC (`tasks.registry.evaluate`); these
figures are what a person reads on the version and in its model card."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

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


def slice_metrics(
    x: pd.DataFrame, y: np.ndarray, p: np.ndarray, slices: Sequence[str], min_rows: int
) -> list[dict[str, Any]]:
    """One row per slice (`carrier=UA`) with at least `min_rows` rows: AUC (NaN when the
    slice holds one class only), positive rate (labels), mean score, ECE, rows."""
    labels = np.asarray(y)
    scores = np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.5, posinf=1.0, neginf=0.0)
    found = []
    for column in slices:
        values = x[column].astype("object").to_numpy()
        for value in pd.unique(values[pd.notna(values)]):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            found.append(
                {
                    "slice": f"{column}={value}",
                    "auc": auc(labels[mask], scores[mask]),
                    "positive_rate": float(labels[mask].mean()),
                    "mean_score": float(scores[mask].mean()),
                    "ece": expected_calibration_error(labels[mask], scores[mask]),
                    "rows": int(mask.sum()),
                }
            )
    return found


def aucs_of(table: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Slice -> AUC, for the slices that have one (both classes present)."""
    return {row["slice"]: row["auc"] for row in table if not np.isnan(row["auc"])}


def slice_auc_gap(table: Sequence[dict[str, Any]]) -> float:
    """Best minus worst slice AUC (NaN with fewer than two slices that have an AUC)."""
    aucs = list(aucs_of(table).values())
    return float(max(aucs) - min(aucs)) if len(aucs) >= 2 else float("nan")


def slices_csv(table: Sequence[dict[str, Any]]) -> str:
    columns = ["slice", "auc", "positive_rate", "mean_score", "ece", "rows"]
    return pd.DataFrame(list(table), columns=columns).to_csv(index=False)


def slice_aucs(
    x: pd.DataFrame, y: np.ndarray, p: np.ndarray, slices: Sequence[str], min_rows: int
) -> dict[str, float]:
    """AUC per value of each slice column (`carrier=UA`), for slices big enough to judge (and
    holding both classes)."""
    return aucs_of(slice_metrics(x, y, p, slices, min_rows))
