"""Confidence-based performance estimation (CBPE, as NannyML publishes it): a classifier's
metric on an unlabelled batch, from its own calibrated scores.

NannyML itself does not resolve here: its `flaml` dependency needs xgboost < 3 (we run 3.2).
Binary, from NannyML's docs ("Estimation of Performance of Binary Classification"):
1. Calibrate: fit an isotonic regression from the model's scores to its labels on a labelled
   reference set. Ours is the champion's holdout, which it never trained on; the map is stored
   in its drift reference profile (`reference/<dataset>/<version>.json`, key `calibration`).
2. For an unlabelled batch, each row's calibrated score p is the chance it is positive. At
   each threshold t on the raw score, the expected confusion matrix is
   TP = sum(p | score >= t), FP = sum(1 - p | score >= t), FN = sum(p | score < t),
   TN = sum(1 - p | score < t). The expected ROC curve is (FP / sum(1 - p), TP / sum(p)) over
   every threshold, and the estimated AUC its area by the trapezoid rule.
Multiclass ("Estimation of Performance of Multiclass Classification"): one isotonic map per
class, one against the rest; on a batch each row's calibrated probabilities (normalised to sum
to 1) give each class's expected ROC curve, and the macro AUC is the mean of the classes'
expected AUCs. The expected log loss is the mean of -sum_k p_k log(score_k).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

MIN_CALIBRATION_ROWS = 50  # below this an isotonic map is noise: no estimate

# A value and, when there is no sound one, why (the value is then NaN).
Found = tuple[float, str | None]
NAN = float("nan")


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


def expected_log_loss(scores: np.ndarray, probabilities: np.ndarray) -> float:
    """The log loss a batch is expected to have when each row is positive with its calibrated
    `probabilities` and the model said `scores`."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 1e-7, 1 - 1e-7)
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    return float(np.mean(-(p * np.log(s) + (1 - p) * np.log(1 - s)))) if len(s) else float("nan")


# -- multiclass: per class ----------------------------------------------------------------------


def fit_per_class(scores: np.ndarray, labels: np.ndarray | pd.Series) -> dict[str, Any] | None:
    """One isotonic map per class (None for a class the holdout has too few rows of)."""
    y, p = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if p.ndim != 2 or len(y) < MIN_CALIBRATION_ROWS:
        return None
    maps = [fit_calibration(p[:, k], (y == k).astype(np.int8)) for k in range(p.shape[1])]
    return {"method": "isotonic per class", "classes": maps}


def per_class_value(calibration: dict[str, Any], metric: str, scores: np.ndarray) -> Found:
    """The expected macro AUC or log loss of a batch from the per-class maps, or why not."""
    maps = calibration["classes"]
    missing = [str(k) for k, found in enumerate(maps) if found is None]
    if missing:
        return NAN, f"class(es) {', '.join(missing)} had too few holdout rows to calibrate"
    p = np.asarray(scores, dtype=np.float64)
    calibrated = np.column_stack([calibrate(m, p[:, k]) for k, m in enumerate(maps)])
    calibrated = calibrated / np.clip(calibrated.sum(axis=1, keepdims=True), 1e-12, None)
    if metric == "multiclass_log_loss":
        return float(np.mean(-(calibrated * np.log(np.clip(p, 1e-7, 1.0))).sum(axis=1))), None
    if metric != "macro_auc":
        return NAN, f"CBPE gives no estimate of {metric}"
    aucs = [expected_auc(p[:, k], calibrated[:, k]) for k in range(p.shape[1])]
    finite = [a for a in aucs if math.isfinite(a)]
    if len(finite) < 2:
        return NAN, "the batch is expected to hold fewer than two classes: no macro AUC"
    return float(np.mean(finite)), None
