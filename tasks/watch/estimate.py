"""Performance before labels: the champion's judged metric on an unlabelled batch, estimated.

- binary: its AUC (or log loss) from its own calibrated scores (confidence-based performance
  estimation, CBPE, tasks/watch/cbpe.py);
- multiclass: the same for each class, one against the rest, and the macro mean (cbpe.py);
- regression: its RMSE or MAE from a model of its error fitted on its holdout (direct loss
  estimation, DLE, tasks/watch/loss_estimate.py).

Each assumes the relation between features and label has not moved (no concept drift): when it
has, the estimate and the real value part, which is why the real value is shown beside it when
the batch's labels are in. On the binary demo CBPE erred upward on every month (+0.01 to +0.09,
benchmarks/results/cbpe.json), so an estimate is shown with the errors it had on the earlier
batches whose labels came in (`with_past_errors`): corrected by their mean, and the range they
span, which is how far to trust it. Where no estimate is sound (no map stored, too few rows of a
class to calibrate, predictions outside the range the error model saw) the estimate says so
(`unsound`) and carries no number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.core.metrics import TaskKind
from tasks.core.results import ABSENT_IF_NONE
from tasks.data.features import Datasets
from tasks.watch.cbpe import (  # noqa: F401 (re-exported: the binary estimate's vocabulary)
    MIN_CALIBRATION_ROWS,
    calibrate,
    expected_auc,
    expected_log_loss,
    fit_calibration,
    fit_per_class,
    per_class_value,
)
from tasks.watch.loss_estimate import fit_loss_model, loss_value
from tasks.watch.task_metrics import shown


@dataclass
class PastErrors:
    """The estimate's errors (estimate minus real value) on the earlier labelled batches."""

    batches: int
    mean: float
    low: float
    high: float


@dataclass
class Estimate:
    """The champion's judged `metric` on a batch, estimated before its labels (`value`, by CBPE
    or DLE); the real value and the error beside it once labels are in; and, given enough
    earlier labelled batches, the estimate corrected by their mean error and the `range` the
    real value fell in relative to it there. `unsound`: why there is no number (`value` None)."""

    method: str
    metric: str
    value: float | None
    realised: float | None
    error: float | None
    past_errors: PastErrors | None = field(default=None, metadata=ABSENT_IF_NONE)
    corrected: float | None = field(default=None, metadata=ABSENT_IF_NONE)
    range: list[float] | None = field(default=None, metadata=ABSENT_IF_NONE)
    unsound: str | None = field(default=None, metadata=ABSENT_IF_NONE)

    @property
    def title(self) -> str:
        from tasks.core.metrics import METRICS

        return METRICS[self.metric].title


def estimate_auc(
    calibration: dict[str, Any] | None, scores: np.ndarray, realised_auc: float | None = None
) -> Estimate | None:
    """The binary AUC estimate as monitoring reports it (`estimate_metric` for any task)."""
    return estimate_metric(calibration, "roc_auc", scores, None, realised_auc)


def estimated(
    method: str,
    metric: str,
    value: float,
    unsound: str | None = None,
    realised: float | None = None,
) -> Estimate:
    """An estimate with the real value (the metric on the batch's labelled rows, once they are
    in) and the error beside it; `unsound` instead of a number when there is no sound one."""
    if unsound is None and not math.isfinite(value):
        unsound = "the batch is expected to hold a single class: the metric is undefined"
    number = None if unsound else value
    known = realised is not None and math.isfinite(realised)
    return Estimate(
        method=method,
        metric=metric,
        value=number,
        realised=realised if known else None,
        error=number - realised if known and realised is not None and number is not None else None,
        unsound=unsound,
    )


def estimate_metric(
    calibration: dict[str, Any] | None,
    metric: str,
    scores: np.ndarray,
    x: pd.DataFrame | None,
    realised: float | None = None,
) -> Estimate | None:
    """The champion's `metric` on a batch before labels, from what its profile stores
    (`calibration`: the binary isotonic map, the per-class maps, or the error model) and its
    `scores` of the batch (model inputs `x` for the error model). None when the profile stores
    nothing to estimate with (a champion trained before estimates existed)."""
    if not calibration or len(scores) == 0:
        return None
    method = calibration.get("method", "isotonic")
    if method == "isotonic":
        calibrated = calibrate(calibration, scores)
        if metric == "roc_auc":
            return estimated("CBPE", metric, expected_auc(scores, calibrated), None, realised)
        if metric == "log_loss":
            value = expected_log_loss(scores, calibrated)
            return estimated("CBPE", metric, value, None, realised)
        return estimated(
            "CBPE", metric, float("nan"), f"CBPE gives no estimate of {metric}", realised
        )
    if method == "isotonic per class":
        return estimated("CBPE", metric, *per_class_value(calibration, metric, scores), realised)
    if method == "DLE":
        value, why = loss_value(calibration, metric, scores, x)
        return estimated("DLE", metric, value, why, realised)
    return None


MIN_PAST_ERRORS = 2  # fewer earlier labelled batches: the estimate is shown uncorrected


def with_past_errors(estimate: Estimate, past: list[float]) -> Estimate:
    """The estimate with what the earlier labelled batches say of it: `past_errors` (how many,
    mean, lowest, highest), the `corrected` value (estimate minus their mean) and the `range`
    the real value fell in relative to the estimate on those batches. Unchanged with fewer than
    `MIN_PAST_ERRORS` of them."""
    errors = [e for e in past if e is not None and math.isfinite(e)]
    value = estimate.value
    if len(errors) < MIN_PAST_ERRORS or value is None or not math.isfinite(value):
        return estimate
    mean = float(np.mean(errors))
    return replace(
        estimate,
        past_errors=PastErrors(len(errors), mean, min(errors), max(errors)),
        corrected=value - mean,
        range=[value - max(errors), value - min(errors)],
    )


def trust_text(estimate: Estimate) -> str:
    """How far to trust an estimate, in words ("" without earlier labelled batches)."""
    past, corrected, likely = estimate.past_errors, estimate.corrected, estimate.range
    if past is None or corrected is None or likely is None:
        return ""
    low, high = likely
    return (
        f"; it erred by {shown(past.low, True)} to {shown(past.high, True)} on {past.batches} "
        f"earlier labelled batches: corrected {shown(corrected)}, likely {shown(low)} to "
        f"{shown(high)}"
    )


def estimate_text(estimate: Estimate) -> str:
    """The estimate in words: the metric named, marked as an estimate (its method), how far to
    trust it, and the real value beside it once labels are in; or why there is no number."""
    head = f"champion {estimate.title} estimated before labels ({estimate.method})"
    if estimate.value is None:
        return f"{head}: no sound estimate ({estimate.unsound})"
    text = f"{head}: {shown(estimate.value)}" + trust_text(estimate)
    if estimate.realised is not None and estimate.error is not None:
        text += (
            f"; real {estimate.title} {shown(estimate.realised)} ({shown(estimate.error, True)})"
        )
    return text


@task(name="fit-score-calibration", cache_policy=NO_CACHE)
def fit_calibration_task(
    model: Any, data: Datasets, config: PerennialConfig | None = None
) -> dict[str, Any] | None:
    """What estimates a model's metric before labels, fitted on its holdout (kept with its
    reference profile): the isotonic map (binary), one per class (multiclass), the model of its
    error (regression). Without `config`, the task is the model's: a classifier with two
    classes, more, or a regressor."""
    from tasks.registry.metrics import scores

    task = config.target.task if config is not None else _task_of(model)
    found = scores(model, data.x_holdout, task)
    if task == "binary":
        return fit_calibration(found, data.y_holdout)
    if task == "multiclass":
        return fit_per_class(found, data.y_holdout)
    metric = config.primary_metric if config is not None else "rmse"
    seed = config.hpo.seed if config is not None else 0
    return fit_loss_model(data.x_holdout, data.y_holdout, found, metric, seed)


def _task_of(model: Any) -> TaskKind:
    task = getattr(model, "task", None)  # a registered model keeps its task
    if task in ("binary", "multiclass", "regression"):
        return task
    if not hasattr(model, "predict_proba"):
        return "regression"
    classes = getattr(model, "n_classes_", None) or len(getattr(model, "classes_", [0, 1]))
    return "multiclass" if classes > 2 else "binary"
