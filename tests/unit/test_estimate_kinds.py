"""Estimates before labels beyond binary: CBPE per class (multiclass) and direct loss estimation
(regression), on synthetic data whose answer is known: the estimate must land near the value
the batch's labels then give, and say so when it has no sound number."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tasks.core.metrics import METRICS
from tasks.watch.cbpe import fit_per_class
from tasks.watch.estimate import estimate_metric, estimate_text, fit_calibration_task
from tasks.watch.loss_estimate import fit_loss_model

CLASSES = 3


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def three_classes(rows: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The model's (overconfident) probabilities of three classes and labels drawn from the
    true ones; `shift` moves the batch towards the last class."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.2, (rows, CLASSES))
    logits[:, -1] += shift
    truth = softmax(logits)
    labels = np.array([rng.choice(CLASSES, p=row) for row in truth])
    return softmax(2.0 * logits), labels


@pytest.mark.parametrize("metric", ["macro_auc", "multiclass_log_loss"])
def test_cbpe_per_class_estimates_the_realised_multiclass_metric(metric: str) -> None:
    reference_scores, reference_labels = three_classes(20_000, 1)
    calibration = fit_per_class(reference_scores, reference_labels)
    assert calibration is not None and all(calibration["classes"])
    batch_scores, batch_labels = three_classes(20_000, 2, shift=0.8)
    realised = METRICS[metric].compute(batch_labels, batch_scores)
    found = estimate_metric(calibration, metric, batch_scores, None, realised)
    assert found is not None and found.method == "CBPE" and found.value is not None
    assert abs(found.value - realised) < 0.02 * max(1.0, realised), (found.value, realised)
    assert found.error == pytest.approx(found.value - realised)
    # The overconfident scores taken as they are miss the log loss by far more.
    if metric == "multiclass_log_loss":
        naive = float(np.mean(-(batch_scores * np.log(batch_scores)).sum(axis=1)))
        assert abs(naive - realised) > 5 * abs(found.value - realised)


def test_a_class_too_rare_to_calibrate_gives_no_number_and_says_why() -> None:
    scores, labels = three_classes(2_000, 3)
    labels[labels == 2] = 0  # the holdout never saw class 2
    calibration = fit_per_class(scores, labels)
    assert calibration is not None and calibration["classes"][2] is None
    found = estimate_metric(calibration, "macro_auc", scores, None)
    assert found is not None and found.value is None and found.error is None
    assert "class(es) 2 had too few holdout rows" in (found.unsound or "")
    assert "no sound estimate" in estimate_text(found) and "macro AUC" in estimate_text(found)


def heteroscedastic(rows: int, seed: int, spread: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """A label whose noise grows with |x2|; `spread` moves x2 away from 0 (a noisier batch)."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "x1": rng.normal(0.0, 1.0, rows),
            "x2": rng.normal(spread, 1.0, rows),
            "carrier": rng.choice(["UA", "DL"], rows),  # text: not an input of the error model
        }
    )
    y = 3.0 * x["x1"].to_numpy() + rng.normal(0.0, 1.0 + 2.0 * np.abs(x["x2"].to_numpy()))
    return x, y


@pytest.mark.parametrize("metric", ["rmse", "mae"])
def test_dle_follows_a_batch_whose_error_grew(metric: str) -> None:
    x_ref, y_ref = heteroscedastic(20_000, 1)
    model = fit_loss_model(x_ref, y_ref, 3.0 * x_ref["x1"].to_numpy(), metric)
    assert model is not None and model["columns"] == ["x1", "x2"]
    x, y = heteroscedastic(20_000, 2, spread=1.5)
    predictions = 3.0 * x["x1"].to_numpy()
    realised = METRICS[metric].compute(y, predictions)
    reference = METRICS[metric].compute(y_ref, 3.0 * x_ref["x1"].to_numpy())
    assert realised > 1.3 * reference  # the batch really is worse
    found = estimate_metric(model, metric, predictions, x, realised)
    assert found is not None and found.method == "DLE" and found.value is not None
    assert abs(found.value - realised) < 0.05 * realised, (found.value, realised, reference)
    assert "RMSE" in estimate_text(found) if metric == "rmse" else "MAE" in estimate_text(found)


def test_dle_refuses_predictions_outside_the_range_it_saw() -> None:
    x_ref, y_ref = heteroscedastic(5_000, 1)
    model = fit_loss_model(x_ref, y_ref, 3.0 * x_ref["x1"].to_numpy(), "rmse")
    assert model is not None
    x, _ = heteroscedastic(5_000, 2)
    found = estimate_metric(model, "rmse", 3.0 * x["x1"].to_numpy() + 40.0, x)
    assert found is not None and found.value is None
    assert "outside" in (found.unsound or "") and "has not seen" in (found.unsound or "")
    assert fit_loss_model(x_ref, y_ref, 3.0 * x_ref["x1"].to_numpy(), "mape") is None


def test_the_fitting_task_follows_the_model_task() -> None:
    """What the training flow keeps with the profile, from real XGBoost models."""
    import xgboost as xgb

    x, y = heteroscedastic(3_000, 4)
    regressor = xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1).fit(x[["x1", "x2"]], y)
    data = SimpleNamespace(x_holdout=x[["x1", "x2"]], y_holdout=pd.Series(y))
    assert fit_calibration_task.fn(regressor, data)["method"] == "DLE"
    classes = np.digitize(y, [-2.0, 2.0])
    classifier = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1)
    classifier.fit(x[["x1", "x2"]], classes)
    data = SimpleNamespace(x_holdout=x[["x1", "x2"]], y_holdout=pd.Series(classes))
    found = fit_calibration_task.fn(classifier, data)
    assert found["method"] == "isotonic per class" and len(found["classes"]) == 3
