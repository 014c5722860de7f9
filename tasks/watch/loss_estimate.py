"""Direct loss estimation (DLE, as NannyML names it): a regressor's RMSE or MAE on an
unlabelled batch.

A small gradient-boosted model of the champion's squared error (for RMSE) or absolute error
(for MAE) is fitted on its holdout, from the numeric model inputs and the champion's
prediction; on a batch its mean predicted loss is the estimate (the square root of it for
RMSE). It is stored as XGBoost's JSON model in the reference profile: no pickle. It cannot see
a batch unlike its holdout: when the champion's predictions leave the range they had there, it
says so instead of giving a number. Like CBPE it assumes the relation between features and
label has not moved.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tasks.watch.cbpe import NAN, Found

LOSSES = {"rmse": "squared", "mae": "absolute"}  # the error DLE models for each metric
MIN_LOSS_ROWS = 200  # fewer holdout rows: no error model
LOSS_ROUNDS, LOSS_DEPTH, LOSS_MIN_CHILD = 100, 4, 20.0
# The champion's holdout predictions between their 1st and 99th percentiles; a batch with more
# than this share beyond that range is not one the error model has seen.
RANGE_QUANTILES, MAX_OUTSIDE = (0.01, 0.99), 0.10


def loss_inputs(x: pd.DataFrame, predictions: np.ndarray, columns: list[str]) -> np.ndarray:
    """The error model's inputs: the numeric model inputs it was fitted on, then the
    champion's prediction."""
    numbers = [x[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in columns]
    return np.column_stack([*numbers, np.asarray(predictions, dtype=np.float64)])


def fit_loss_model(
    x: pd.DataFrame,
    labels: np.ndarray | pd.Series,
    predictions: np.ndarray,
    metric: str,
    seed: int = 0,
) -> dict[str, Any] | None:
    """The error model of a regressor on its holdout, as the reference profile keeps it; None
    for a metric DLE does not estimate (MAPE) or a holdout too small to learn from."""
    import xgboost as xgb

    y, p = np.asarray(labels, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    if metric not in LOSSES or len(y) < MIN_LOSS_ROWS or not np.isfinite(p).all():
        return None
    errors = y - p
    loss = errors**2 if LOSSES[metric] == "squared" else np.abs(errors)
    columns = [c for c in x.columns if pd.api.types.is_numeric_dtype(x[c])]
    parameters = {
        "objective": "reg:squarederror",
        "max_depth": LOSS_DEPTH,
        "eta": 0.1,
        "min_child_weight": LOSS_MIN_CHILD,
        "subsample": 0.8,
        "nthread": 2,
        "seed": seed,
    }
    booster = xgb.train(
        parameters, xgb.DMatrix(loss_inputs(x, p, columns), label=loss), LOSS_ROUNDS
    )
    low, high = np.quantile(p, RANGE_QUANTILES)
    return {
        "method": "DLE",
        "metric": metric,
        "loss": LOSSES[metric],
        "rows": len(y),
        "columns": columns,
        "prediction_range": [float(low), float(high)],
        "booster": bytes(booster.save_raw(raw_format="json")).decode(),
    }


def loss_value(model: dict[str, Any], metric: str, predictions: np.ndarray, x: Any) -> Found:
    """The champion's RMSE or MAE on a batch (model inputs `x`) from its error model, or why
    there is no sound one."""
    import xgboost as xgb

    if metric != model["metric"]:
        return NAN, f"the error model estimates {model['metric']}, not {metric}"
    if x is None or any(c not in x.columns for c in model["columns"]):
        return NAN, "the batch lacks the model inputs the error model was fitted on"
    p = np.asarray(predictions, dtype=np.float64)
    low, high = model["prediction_range"]
    outside = float(((p < low) | (p > high)).mean())
    if outside > MAX_OUTSIDE:
        return NAN, (
            f"{outside:.0%} of the champion's predictions fall outside [{low:.4g}, {high:.4g}], "
            "where they lay on its holdout: the error model has not seen such rows"
        )
    booster = xgb.Booster()
    booster.load_model(bytearray(model["booster"].encode()))
    loss = np.clip(booster.predict(xgb.DMatrix(loss_inputs(x, p, model["columns"]))), 0.0, None)
    mean = float(np.mean(loss))
    return (math.sqrt(mean) if model["loss"] == "squared" else mean), None
