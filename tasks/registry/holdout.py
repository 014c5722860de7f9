"""Holdout metrics: what one model scores on the holdout, by its task, under the names the
metric registry gives them (tasks/core/metrics.py), plus what the sanity checks and the guards
read. A binary model's record has the same keys and numbers as before other tasks existed:
`roc_auc`, `log_loss`, `mean_prediction`, `label_rate`, `rows`, `finite`, `worst_slice_auc`,
`worst_slice`.

- `mean_prediction` / `label_rate`: binary, the mean score and the positive share; multiclass,
  the same for the first class; regression, the mean prediction and the mean label.
- regression only: `mean_bias` (mean prediction - mean label), `label_std`, and beside the
  primary metric its naive baseline's, `baseline_<metric>` (every row predicted as the training
  label's mean), and `skill` (1 - metric / baseline's).
- `worst_slice_<metric>` (`worst_slice_auc` for a binary AUC): the worst slice's primary metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.metrics import TASK_METRICS, TaskKind, default_primary, metric
from tasks.registry.slices import slice_aucs

FIXED = ("mean_prediction", "label_rate", "rows", "finite")


def worst_slice_name(primary: str) -> str:
    """The record's key of the worst slice's primary metric (`worst_slice_auc` for ROC AUC, the
    name binary versions have always carried)."""
    return "worst_slice_auc" if primary == "roc_auc" else f"worst_slice_{primary}"


@dataclass(frozen=True)
class Metrics:
    """One model's holdout record. `values` holds the task's metrics and the guards' numbers by
    name; each is also an attribute (`metrics.roc_auc`, `metrics.rmse`)."""

    values: dict[str, float]
    mean_prediction: float
    label_rate: float
    rows: int
    finite: bool
    worst_slice: str = "none"
    task: TaskKind = "binary"
    unit: str = field(default="", compare=False)  # regression: the label's unit, for reading

    def __getattr__(self, name: str) -> float:
        values = self.__dict__.get("values", {})
        if name in values:
            return float(values[name])
        raise AttributeError(name)

    def get(self, name: str) -> float:
        """A metric by name, NaN when this record has none."""
        return float(self.values.get(name, float("nan")))

    def shown(self, name: str) -> str:
        """A metric's value as summaries print it (`0.7123`, `44.10 min`)."""
        return metric(name).show(self.get(name), self.unit)

    def as_dict(self) -> dict[str, Any]:
        main = {k: v for k, v in self.values.items() if not k.startswith("worst_slice")}
        worst = {k: v for k, v in self.values.items() if k.startswith("worst_slice")}
        record: dict[str, Any] = {
            **main,
            **{name: getattr(self, name) for name in FIXED},
            **worst,
            "worst_slice": self.worst_slice,
        }
        if self.task != "binary":
            record["task"] = self.task
            record["unit"] = self.unit
        return record

    def json_form(self) -> dict[str, Any]:
        """The JSON of this record (tasks/core/results.py): `as_dict`, with the fields a
        subclass adds (e.g. a version)."""
        own = {f.name for f in fields(Metrics)}
        extra = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in own}
        return {**self.as_dict(), **extra}

    @classmethod
    def binary(
        cls,
        roc_auc: float,
        log_loss: float,
        mean_prediction: float,
        label_rate: float,
        rows: int,
        finite: bool,
        worst_slice_auc: float = float("nan"),
        worst_slice: str = "none",
    ) -> Metrics:
        """A binary record from its numbers, in the order the binary record always had."""
        values = {"roc_auc": roc_auc, "log_loss": log_loss, "worst_slice_auc": worst_slice_auc}
        return cls(values, mean_prediction, label_rate, rows, finite, worst_slice)

    @classmethod
    def recorded(cls, record: dict[str, Any] | None) -> Metrics | None:
        """Metrics as a decision's tags recorded them (`perennial.decision_numbers`), or None
        when they hold none (a decision not recorded yet, or no champion to compare with)."""
        if not record:
            return None
        known = {f.name for f in fields(cls)} - {"values"}
        values = {
            k: float(v)
            for k, v in record.items()
            if k not in known and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        return cls(values, **{k: v for k, v in record.items() if k in known})


def _safe(p: np.ndarray, labels: np.ndarray, task: TaskKind) -> np.ndarray:
    if task == "binary":
        return np.nan_to_num(p, nan=0.5, posinf=1.0, neginf=0.0)
    if task == "multiclass":
        return np.nan_to_num(p, nan=1.0 / p.shape[1], posinf=1.0, neginf=0.0)
    middle = float(labels.mean()) if len(labels) else 0.0
    return np.nan_to_num(p, nan=middle, posinf=middle, neginf=middle)


def _task_values(labels: np.ndarray, safe: np.ndarray, task: TaskKind) -> dict[str, float]:
    names = [
        name
        for name in TASK_METRICS[task]
        # MAPE only where the label stays away from 0 (else it is infinite or meaningless).
        if name != "mape" or (len(labels) and np.abs(labels).min() > 0)
    ]
    return {name: metric(name).compute(labels, safe) for name in names}


def _regression_values(
    labels: np.ndarray, safe: np.ndarray, primary: str, baseline: float | None
) -> dict[str, float]:
    found = {
        "mean_bias": float(safe.mean() - labels.mean()),
        "label_std": float(labels.std()),
    }
    if baseline is not None:
        judge = metric(primary)
        naive = judge.compute(labels, np.full(len(labels), baseline, dtype=np.float64))
        found[f"baseline_{primary}"] = naive
        found["skill"] = 1.0 - judge.compute(labels, safe) / naive if naive else float("nan")
    return found


def metrics_from(
    x: pd.DataFrame,
    y: pd.Series | np.ndarray,
    p: np.ndarray,
    slices: Sequence[str] = (),
    min_slice_rows: int = 200,
    *,
    task: TaskKind = "binary",
    primary: str | None = None,
    baseline: float | None = None,
    unit: str = "",
) -> Metrics:
    """The record of scores `p` (the task's shape: tasks/core/metrics.py) against labels `y`.
    `baseline`: regression, the training label's mean (the naive model the floor compares)."""
    primary = primary or default_primary(task)
    labels = np.asarray(y, dtype=np.float64 if task == "regression" else None)
    scores = np.asarray(p, dtype=np.float64)
    safe = _safe(scores, labels, task)
    values = _task_values(labels, safe, task)
    if task == "regression":
        values |= _regression_values(labels, safe, primary, baseline)
    per_slice = slice_aucs(x, labels, safe, slices, min_slice_rows, task, primary)
    judge = metric(primary)
    pick = max if not judge.higher_is_better else min
    worst = pick(per_slice, key=per_slice.__getitem__) if per_slice else "none"
    values[worst_slice_name(primary)] = per_slice.get(worst, float("nan"))
    first = safe[:, 0] if task == "multiclass" else safe
    return Metrics(
        values=values,
        mean_prediction=float(first.mean()),
        label_rate=float((labels == 0).mean() if task == "multiclass" else labels.mean()),
        rows=len(labels),
        finite=bool(np.isfinite(scores).all()),
        worst_slice=worst,
        task=task,
        unit=unit,
    )
