"""A model's scores and the binary metrics read off them (the registry of every task's metrics is
tasks/core/metrics.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.core.metrics import METRICS, TaskKind, bootstrap_interval, paired_bootstrap_gain


def scores(model: Any, x: pd.DataFrame, task: TaskKind) -> np.ndarray:
    """What a model of this task gives, in the shapes tasks/core/metrics.py names: the positive
    class's probability (binary, (n,)), each class's probability (multiclass, (n, k)), the
    value (regression, (n,)). A classifier answers `predict_proba`, a regressor `predict`."""
    if task == "regression":
        return np.asarray(model.predict(x), dtype=np.float64)
    probabilities = np.asarray(model.predict_proba(x), dtype=np.float64)
    return probabilities[:, 1] if task == "binary" else probabilities


def one_per_row(found: np.ndarray) -> np.ndarray:
    """One number a row of a model's scores, for the profiles that follow a score's spread
    (drift reference, live sample): the scores themselves, or a multiclass model's probability
    of the class it chose."""
    return found.max(axis=1) if found.ndim == 2 else found


def predict(model: Any, x: pd.DataFrame) -> np.ndarray:
    """Probability of the positive class (a binary model's `scores`)."""
    return np.asarray(model.predict_proba(x), dtype=np.float64)[:, 1]


def auc(y: np.ndarray, p: np.ndarray) -> float:
    return METRICS["roc_auc"].compute(np.asarray(y), p)


def paired_bootstrap(
    y: pd.Series | np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Interval of AUC(challenger) - AUC(champion), resampling holdout rows."""
    return paired_bootstrap_gain(
        METRICS["roc_auc"], np.asarray(y), challenger, champion, samples, confidence, seed
    )


def auc_interval(
    y: pd.Series | np.ndarray, scores: np.ndarray, samples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Bootstrap interval of one model's AUC, resampling rows (the holdout's noise: a batch
    scored inside it is no worse than the holdout was)."""
    return bootstrap_interval(METRICS["roc_auc"], np.asarray(y), scores, samples, confidence, seed)
