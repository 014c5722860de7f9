"""The target's task in monitoring: the metric the champion is judged by, its value on labelled
rows, the interval of its holdout value, what the label looked like and the values of the
predictions the drift profile bins, for each kind of target (tasks/core/metrics.py).

- binary: the champion's AUC (and log loss), the label's positive rate, the scores;
- multiclass: its macro one-vs-rest AUC (and log loss), the share of each class, the
  probability of the class it chose;
- regression: its RMSE or MAE (and the other), the label's mean and binned distribution, the
  predicted values.

A person reads the metric's title (`Metric.title`: AUC, macro AUC, RMSE, ...), never a name
that belongs to another task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.core.metrics import METRICS, TASK_METRICS, Metric, TaskKind, bootstrap_interval
from tasks.watch.binning import numeric_shares, psi, quantile_edges

POSITIVE_RATE = "positive rate"


def judged_metric(config: PerennialConfig) -> Metric:
    """The metric the champion is judged by: the config's primary metric."""
    return METRICS[config.primary_metric]


def champion_scores(model: Any, x: pd.DataFrame, config: PerennialConfig) -> np.ndarray:
    """The model's output in the task's shape (tasks/registry/metrics.py `scores`)."""
    from tasks.registry.metrics import scores

    return scores(model, x, config.target.task)


def known_labels(
    labels: pd.Series | np.ndarray, scores: np.ndarray, config: PerennialConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores of the rows a metric can judge: a multiclass label outside
    `target.classes` (index -1, which the gate reports) has no probability to judge."""
    y = np.asarray(labels)
    if config.target.task != "multiclass":
        return y, scores
    keep = y >= 0
    return y[keep], scores[keep]


def realised_metrics(
    labels: pd.Series | np.ndarray, scores: np.ndarray, config: PerennialConfig
) -> dict[str, float]:
    """Each of the task's metrics on labelled rows (MAPE only when it is the primary metric:
    near-zero labels make it meaningless), the rows, the label's statistic and the mean
    prediction. Binary keys are the ones monitoring always recorded (`roc_auc`, `log_loss`,
    `label_rate`, `mean_prediction`, `rows`)."""
    task = config.target.task
    y, s = known_labels(labels, scores, config)
    found: dict[str, float] = {}
    for name in TASK_METRICS[task]:
        if name == "mape" and config.primary_metric != "mape":
            continue
        found[name] = METRICS[name].compute(y, s) if len(y) else float("nan")
    if task == "binary":
        found["label_rate"] = float(np.mean(y)) if len(y) else float("nan")
    elif task == "regression":
        found["label_mean"] = float(np.mean(y)) if len(y) else float("nan")
    if task != "multiclass":
        found["mean_prediction"] = float(np.mean(s)) if len(s) else float("nan")
    found["rows"] = len(y)
    return found


def holdout_interval(
    model: Any, x_holdout: pd.DataFrame, y_holdout: pd.Series, config: PerennialConfig
) -> tuple[float, float] | None:
    """The bootstrap interval of the model's judged metric on its holdout (the holdout's noise:
    a batch scored inside it is no worse than the holdout was), None if it cannot be had."""
    y, s = known_labels(y_holdout, champion_scores(model, x_holdout, config), config)
    if len(y) < 2 or (config.target.task != "regression" and len(np.unique(y)) < 2):
        return None
    policy = config.promotion
    low, high = bootstrap_interval(
        judged_metric(config), y, s, policy.bootstrap_samples, policy.confidence, config.hpo.seed
    )
    return None if not (np.isfinite(low) and np.isfinite(high)) else (low, high)


# -- predictions, as the drift profile bins them -------------------------------------------------


def prediction_values(scores: np.ndarray) -> np.ndarray:
    """What the prediction drift bins, one number a row: the score or value, or the probability
    of the class a multiclass model chose (`one_per_row`, as training profiles it)."""
    from tasks.registry.metrics import one_per_row

    return np.asarray(one_per_row(np.asarray(scores, dtype=np.float64)), dtype=np.float64)


def prediction_edges(scores: np.ndarray, bins: int) -> list[float]:
    """Quantile bin edges of the predictions (`prediction_values`)."""
    return quantile_edges(prediction_values(scores), bins)


# -- the label, as the drift profile records it ----------------------------------------------------


@dataclass
class LabelShift:
    """A statistic of a batch's labels against the reference's, and the PSI of the two label
    distributions: the positive rate (binary), the mean (regression), or the share of the
    class that moved most (multiclass)."""

    reference_rate: float
    batch_rate: float
    shift: float  # batch minus reference
    psi: float
    statistic: str = POSITIVE_RATE


def label_profile(y: pd.Series | np.ndarray, config: PerennialConfig) -> dict[str, Any]:
    """The profile's record of the training labels: `label_rate` (binary, as always), or
    `label` with the classes' shares (multiclass) or the mean and binned values (regression)."""
    labels, task = np.asarray(y), config.target.task
    if task == "binary":
        return {"label_rate": float(np.mean(labels))}
    if task == "multiclass":
        return {"label": {"task": task, "shares": class_shares(labels, config).tolist()}}
    values = labels.astype(np.float64)
    edges = quantile_edges(values, config.drift.bins)
    return {
        "label": {
            "task": task,
            "mean": float(np.nanmean(values)),
            "edges": edges,
            "shares": numeric_shares(values, edges).tolist(),
        }
    }


def class_shares(labels: np.ndarray, config: PerennialConfig) -> np.ndarray:
    """Share of each class, then of labels outside the classes (index -1)."""
    k = len(config.target.classes or [])
    index = np.where(labels < 0, k, labels).astype(np.int64)
    return np.bincount(index, minlength=k + 1)[: k + 1] / max(len(labels), 1)


def label_shift(
    profile: dict[str, Any], labels: pd.Series | np.ndarray, config: PerennialConfig | None
) -> LabelShift | None:
    """The batch's labels against the profile's (None when the profile has no label record)."""
    y = np.asarray(labels)
    recorded = profile.get("label")
    if recorded is None:
        if "label_rate" not in profile:
            return None
        rate, reference = float(np.mean(y)), float(profile["label_rate"])
        return LabelShift(
            reference, rate, rate - reference, psi([1 - reference, reference], [1 - rate, rate])
        )
    if recorded["task"] == "regression":
        values = y.astype(np.float64)
        shares = numeric_shares(values, recorded["edges"])
        mean = float(np.nanmean(values)) if len(values) else float("nan")
        drift = psi(recorded["shares"], shares)
        return LabelShift(recorded["mean"], mean, mean - recorded["mean"], drift, "mean")
    if config is None:
        return None  # the class names are the config's
    expected = np.asarray(recorded["shares"], dtype=np.float64)
    actual = class_shares(y, config)
    moved = int(np.argmax(np.abs(actual - expected)))
    names = [*(config.target.classes or []), "(not a class)"]
    return LabelShift(
        float(expected[moved]),
        float(actual[moved]),
        float(actual[moved] - expected[moved]),
        psi(expected, actual),
        f"share of {names[moved]}",
    )


def shown(value: float, signed: bool = False) -> str:
    """A metric's value as people read it: four decimals for values below 10 (AUC 0.7120, log
    loss 0.4500), four significant digits above (RMSE 44.13 minutes)."""
    sign = "+" if signed else ""
    return f"{value:{sign}.4f}" if abs(value) < 10 else f"{value:{sign}.4g}"


def task_of(metric: str) -> TaskKind:
    """The task a metric judges (a metric belongs to one task's list)."""
    return next(task for task, names in TASK_METRICS.items() if metric in names)


def companion(metric: str) -> str:
    """The task's other everyday metric, shown beside the judged one (log loss beside AUC, MAE
    beside RMSE, RMSE beside MAE or MAPE)."""
    names = [n for n in TASK_METRICS[task_of(metric)] if n not in (metric, "mape")]
    return names[0]


# The label's statistic a monitored batch records, by task: (record key, what people read).
LABEL_STATISTIC: dict[str, tuple[str, str]] = {
    "binary": ("label_rate", POSITIVE_RATE),
    "regression": ("label_mean", "label mean"),
}
