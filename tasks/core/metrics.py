"""The metric registry: what each kind of target is judged by, in one place.

A target's task (`target.task`) is `binary`, `multiclass` or `regression`. Each task has its
metrics, each with a direction and a name that every stage prints (promotion, guards, floor,
replay, monitor, report, model card, `/metrics`): no stage outside the classification metrics
says "AUC".

Scores, by task (what `Metric.compute` takes beside the labels):
- binary: the probability of the positive class, shape (n,); labels 0/1;
- multiclass: the probability of each class, shape (n, k), columns in `target.classes` order;
  labels are class indexes 0..k-1;
- regression: the predicted value, shape (n,); labels are the values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

TaskKind = Literal["binary", "multiclass", "regression"]
TASKS: tuple[TaskKind, ...] = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Metric:
    name: str  # the config's and the tags' name, e.g. `roc_auc`, `rmse`
    title: str  # what a person reads, e.g. `AUC`, `RMSE`
    higher_is_better: bool
    compute: Callable[[np.ndarray, np.ndarray], float]  # (labels, scores) -> value
    # How a value reads: `score` (4 decimals: AUC, log loss), `units` (2 decimals and the
    # label's unit: RMSE, MAE), `share` (a percentage: MAPE).
    style: Literal["score", "units", "share"] = "score"

    def show(self, value: float, unit: str = "", signed: bool = False) -> str:
        """`value` as decision lines and summaries print it, e.g. `0.7123`, `+1.23 min`."""
        sign = "+" if signed else ""
        if self.style == "share":
            return f"{value:{sign}.1%}"
        if self.style == "units":
            return f"{value:{sign}.2f}" + (f" {unit}" if unit else "")
        return f"{value:{sign}.4f}"

    def gain(self, new: float, old: float) -> float:
        """How much better `new` is than `old`: positive when better, whatever the direction."""
        return new - old if self.higher_is_better else old - new

    def worsening(self, new: float, old: float) -> float:
        return -self.gain(new, old)


def _roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def _binary_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import log_loss

    return float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))


def _macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Macro one-vs-rest AUC over the classes present in `y` (a class absent from a batch has
    no AUC: it is left out, not scored as 0.5)."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if len(present) < 2:
        return float("nan")
    return float(np.mean([roc_auc_score(y == k, p[:, int(k)]) for k in present]))


def _multiclass_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import log_loss

    probabilities = np.clip(p, 1e-7, 1.0)
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
    return float(log_loss(y, probabilities, labels=list(range(p.shape[1]))))


def _rmse(y: np.ndarray, v: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(y, dtype=float) - v) ** 2)))


def _mae(y: np.ndarray, v: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=float) - v)))


def _mape(y: np.ndarray, v: np.ndarray) -> float:
    labels = np.asarray(y, dtype=float)
    return float(np.mean(np.abs(labels - v) / np.abs(labels)))


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("roc_auc", "AUC", True, _roc_auc),
        Metric("log_loss", "log loss", False, _binary_log_loss),
        Metric("macro_auc", "macro AUC", True, _macro_auc),
        Metric("multiclass_log_loss", "log loss", False, _multiclass_log_loss),
        Metric("rmse", "RMSE", False, _rmse, "units"),
        Metric("mae", "MAE", False, _mae, "units"),
        Metric("mape", "MAPE", False, _mape, "share"),
    )
}

# The metrics each task may be judged by; the first is its default primary metric.
TASK_METRICS: dict[TaskKind, tuple[str, ...]] = {
    "binary": ("roc_auc", "log_loss"),
    "multiclass": ("macro_auc", "multiclass_log_loss"),
    "regression": ("rmse", "mae", "mape"),
}


def metric(name: str) -> Metric:
    return METRICS[name]


def default_primary(task: TaskKind) -> str:
    return TASK_METRICS[task][0]


def paired_bootstrap_gain(
    judge: Metric,
    y: np.ndarray,
    challenger: np.ndarray,
    champion: np.ndarray,
    samples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Interval of the challenger's gain over the champion in `judge` (positive = better,
    whatever the metric's direction), resampling holdout rows: both models on the same
    resample, so the noise they share cancels. Resamples where the metric is undefined (one
    class only) are skipped."""
    labels = np.asarray(y)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(samples):
        rows = rng.integers(0, len(labels), len(labels))
        gain = judge.gain(
            judge.compute(labels[rows], challenger[rows]),
            judge.compute(labels[rows], champion[rows]),
        )
        if np.isfinite(gain):
            gains.append(gain)
    if not gains:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(gains, [tail, 1 - tail])
    return float(low), float(high)


def bootstrap_interval(
    judge: Metric, y: np.ndarray, scores: np.ndarray, samples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """Bootstrap interval of one model's `judge` value, resampling rows."""
    labels = np.asarray(y)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        rows = rng.integers(0, len(labels), len(labels))
        value = judge.compute(labels[rows], scores[rows])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
