"""Scores and the metrics read off them: a model's probability of the positive class, its
ROC AUC, and bootstrap intervals of one model's AUC and of the gain between two models scored on
the same rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def predict(model: Any, x: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class."""
    return np.asarray(model.predict_proba(x), dtype=np.float64)[:, 1]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def paired_bootstrap(
    y: pd.Series | np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Interval of AUC(challenger) - AUC(champion), resampling holdout rows (both models on
    the same resample, so the noise they share cancels)."""
    labels = np.asarray(y)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        rows = rng.integers(0, len(labels), len(labels))
        if len(np.unique(labels[rows])) == 2:
            gains.append(auc(labels[rows], challenger[rows]) - auc(labels[rows], champion[rows]))
    tail = (1 - confidence) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    return float(low), float(high)


def auc_interval(
    y: pd.Series | np.ndarray, scores: np.ndarray, samples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Bootstrap interval of one model's AUC, resampling rows (the holdout's noise: a batch
    scored inside it is no worse than the holdout was)."""
    # Against constant scores, whose AUC is 0.5 on every resample: the gain is AUC - 0.5.
    low, high = paired_bootstrap(y, scores, np.zeros(len(scores)), samples, confidence, seed)
    return low + 0.5, high + 0.5
