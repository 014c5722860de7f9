"""Performance before labels: the champion's AUC on an unlabelled batch, estimated from its own
calibrated scores (confidence-based performance estimation, CBPE, as NannyML publishes it).

NannyML itself does not resolve here: its `flaml` dependency needs xgboost < 3 (we run 3.2).
The method, from NannyML's docs ("Estimation of Performance of Binary Classification", CBPE):
1. Calibrate: fit an isotonic regression from the model's scores to its labels on a labelled
   reference set. Ours is the champion's holdout, which it never trained on; the map is stored
   in its drift reference profile (`reference/<dataset>/<version>.json`, key `calibration`).
2. For an unlabelled batch, each row's calibrated score p is the chance it is positive. At
   each threshold t on the raw score, the expected confusion matrix is
   TP = sum(p | score >= t), FP = sum(1 - p | score >= t), FN = sum(p | score < t),
   TN = sum(1 - p | score < t). The expected ROC curve is (FP / sum(1 - p), TP / sum(p)) over
   every threshold, and the estimated AUC its area by the trapezoid rule.
It assumes the relation between features and label has not moved (no concept drift): when it
has, the estimate and the real AUC part, which is why the real AUC is shown beside it when the
batch's labels are in. On the demo it erred upward on every month (+0.01 to +0.09,
benchmarks/results/cbpe.json), so an estimate is shown with the errors it had on the earlier
batches whose labels came in (`with_past_errors`): corrected by their mean, and the range they
span, which is how far to trust it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.results import ABSENT_IF_NONE
from tasks.data.features import Datasets

MIN_CALIBRATION_ROWS = 50  # below this an isotonic map is noise: no estimate


@dataclass
class PastErrors:
    """The estimate's errors (estimate minus real AUC) on the earlier labelled batches."""

    batches: int
    mean: float
    low: float
    high: float


@dataclass
class Estimate:
    """The champion's AUC on a batch, estimated before its labels (CBPE); the real AUC and the
    error beside it once labels are in; and, given enough earlier labelled batches, the estimate
    corrected by their mean error and the `range` the real AUC fell in relative to it there."""

    method: str
    estimated_auc: float
    realised_auc: float | None
    error: float | None
    past_errors: PastErrors | None = field(default=None, metadata=ABSENT_IF_NONE)
    corrected_auc: float | None = field(default=None, metadata=ABSENT_IF_NONE)
    range: list[float] | None = field(default=None, metadata=ABSENT_IF_NONE)


def fit_calibration(scores: np.ndarray, labels: np.ndarray | pd.Series) -> dict[str, Any] | None:
    """Isotonic map from raw scores to the observed positive rate, as its breakpoints (`scores`
    ascending, `probabilities`), so JSON holds it and `calibrate` applies it without sklearn.
    None when the reference has too few rows or only one class (nothing to calibrate on)."""
    from sklearn.isotonic import IsotonicRegression

    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(scores, dtype=np.float64)
    if len(y) < MIN_CALIBRATION_ROWS or len(np.unique(y)) != 2 or not np.isfinite(p).all():
        return None
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
    return {
        "method": "isotonic",
        "rows": len(y),
        "scores": isotonic.X_thresholds_.tolist(),
        "probabilities": isotonic.y_thresholds_.tolist(),
    }


def calibrate(calibration: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    """Calibrated probabilities of raw scores (linear between breakpoints, clipped outside:
    what IsotonicRegression.predict does)."""
    return np.interp(
        np.asarray(scores, dtype=np.float64),
        np.asarray(calibration["scores"], dtype=np.float64),
        np.asarray(calibration["probabilities"], dtype=np.float64),
    )


def expected_auc(scores: np.ndarray, probabilities: np.ndarray) -> float:
    """Area under the expected ROC curve of rows ranked by `scores`, each positive with its
    calibrated `probabilities` (NaN when the batch is expected to hold a single class)."""
    score = np.asarray(scores, dtype=np.float64)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    positives, negatives = p.sum(), (1.0 - p).sum()
    if len(p) == 0 or positives <= 0 or negatives <= 0:
        return float("nan")
    order = np.argsort(-score, kind="stable")
    score, p = score[order], p[order]
    # One point per distinct threshold: tied scores enter the positives together.
    last_of_tie = np.r_[np.flatnonzero(np.diff(score) != 0), len(score) - 1]
    tpr = np.r_[0.0, np.cumsum(p)[last_of_tie] / positives]
    fpr = np.r_[0.0, np.cumsum(1.0 - p)[last_of_tie] / negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def estimate_auc(
    calibration: dict[str, Any] | None, scores: np.ndarray, realised_auc: float | None = None
) -> Estimate | None:
    """The estimate as monitoring reports it; `realised_auc` (the AUC on the batch's labelled
    rows, once they are in) is put beside it with the error. None without a calibration map
    (a champion trained before estimates existed)."""
    if not calibration or len(scores) == 0:
        return None
    estimated = expected_auc(scores, calibrate(calibration, scores))
    known = realised_auc is not None and math.isfinite(realised_auc)
    return Estimate(
        method="CBPE",
        estimated_auc=estimated,
        realised_auc=realised_auc if known else None,
        error=estimated - realised_auc if known and realised_auc is not None else None,
    )


MIN_PAST_ERRORS = 2  # fewer earlier labelled batches: the estimate is shown uncorrected


def with_past_errors(estimate: Estimate, past: list[float]) -> Estimate:
    """The estimate with what the earlier labelled batches say of it: `past_errors` (how many,
    mean, lowest, highest), the `corrected_auc` (estimate minus their mean) and the `range`
    the real AUC fell in relative to the estimate on those batches. Unchanged with fewer than
    `MIN_PAST_ERRORS` of them."""
    errors = [e for e in past if e is not None and math.isfinite(e)]
    if len(errors) < MIN_PAST_ERRORS or not math.isfinite(estimate.estimated_auc):
        return estimate
    value, mean = estimate.estimated_auc, float(np.mean(errors))
    return replace(
        estimate,
        past_errors=PastErrors(len(errors), mean, min(errors), max(errors)),
        corrected_auc=value - mean,
        range=[value - max(errors), value - min(errors)],
    )


def trust_text(estimate: Estimate) -> str:
    """How far to trust an estimate, in words ("" without earlier labelled batches)."""
    past, corrected, likely = estimate.past_errors, estimate.corrected_auc, estimate.range
    if past is None or corrected is None or likely is None:
        return ""
    low, high = likely
    return (
        f"; it erred by {past.low:+.4f} to {past.high:+.4f} on {past.batches} earlier "
        f"labelled batches: corrected {corrected:.4f}, likely {low:.4f} to {high:.4f}"
    )


@task(name="fit-score-calibration", cache_policy=NO_CACHE)
def fit_calibration_task(model: Any, data: Datasets) -> dict[str, Any] | None:
    """The calibration map of a model on its holdout (kept with its reference profile); None
    for a model that is not a binary classifier (no such map yet)."""
    from tasks.registry.metrics import predict

    if getattr(model, "task", "binary") != "binary":
        return None
    return fit_calibration(predict(model, data.x_holdout), data.y_holdout)
