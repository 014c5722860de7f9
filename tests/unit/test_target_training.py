"""Training follows the target's task: XGBoost's objective and evaluation metric, the pruning
callback's metric, Optuna's direction (an existing study of the other direction is refused), the
search, and the model that training returns (what it answers, and that it keeps its task and
classes through the two files the registry stores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.data.features import Datasets
from tasks.learn.model import search_metric, task_objective
from tasks.learn.scorer import CHOSEN_CLASS, Scorer
from tasks.learn.study import StudyDirectionError, create_study, study_direction
from tasks.learn.train import fit_model
from tasks.learn.tune import run_in_threads, tune
from tests.conftest import FLIGHTS, ROOT
from tests.unit.test_tune import synthetic_datasets

MINUTES = ROOT / "configs" / "flights_delay_minutes.yaml"
BAND = ROOT / "configs" / "flights_delay_band.yaml"
PARAMS = {"max_depth": 3, "learning_rate": 0.3}


def task_config(path: Path, home: Path, **hpo: object) -> PerennialConfig:
    config = load_config(path)
    settings = {"trials": 4, "max_rounds": 30, "early_stopping_rounds": 10, "seed": 7, **hpo}
    return config.model_copy(
        update={
            "home": str(home),
            "optuna_storage": None,
            "hpo": config.hpo.model_copy(update=settings),
        }
    )


def task_datasets(config: PerennialConfig, rows: int = 900) -> Datasets:
    """`synthetic_datasets` with the label of the config's task: a value that depends on the
    features (regression), or that value cut in three (multiclass)."""
    data = synthetic_datasets(config, rows=rows)
    numeric = config.features.numeric

    def relabel(x: pd.DataFrame) -> pd.Series:
        rng = np.random.default_rng(len(x))
        value = 30 * x[numeric[0]] + 20 * x[numeric[1]] + rng.normal(0, 10, len(x))
        if config.target.task == "regression":
            return pd.Series(value.to_numpy(), name="y")
        return pd.Series(np.digitize(value, [0, 30]).astype(np.int16), name="y")

    return Datasets(
        data.split,
        data.x_train,
        relabel(data.x_train),
        data.x_valid,
        relabel(data.x_valid),
        data.x_holdout,
        relabel(data.x_holdout),
    )


@pytest.mark.parametrize(
    ("path", "objective", "watched", "direction"),
    [
        (FLIGHTS, {"objective": "binary:logistic"}, "auc", "maximize"),
        (BAND, {"objective": "multi:softprob", "num_class": 3}, "auc", "maximize"),
        (MINUTES, {"objective": "reg:squarederror"}, "rmse", "minimize"),
    ],
)
def test_objective_metric_and_direction_follow_the_task(
    path: Path, objective: dict[str, object], watched: str, direction: str
) -> None:
    config = load_config(path)
    assert task_objective(config) == objective
    assert search_metric(config) == watched
    assert study_direction(config) == direction


def test_the_regression_loss_and_a_log_loss_primary_metric_are_followed() -> None:
    config = load_config(MINUTES)
    huber = config.target.model_copy(update={"regression_objective": "pseudohubererror"})
    assert task_objective(config.model_copy(update={"target": huber})) == {
        "objective": "reg:pseudohubererror"
    }
    by_loss = load_config(BAND).model_copy(update={"primary_metric": "multiclass_log_loss"})
    assert (search_metric(by_loss), study_direction(by_loss)) == ("mlogloss", "minimize")


def test_a_study_of_the_other_direction_is_refused(tmp_path: Path) -> None:
    create_study(task_config(FLIGHTS, tmp_path), "shared-name")  # maximize
    with pytest.raises(StudyDirectionError, match="needs minimize"):
        create_study(task_config(MINUTES, tmp_path), "shared-name")
    # The same direction resumes, whatever the task.
    assert create_study(task_config(BAND, tmp_path), "shared-name").direction.name == "MAXIMIZE"


@pytest.mark.parametrize("path", [MINUTES, BAND])
def test_the_search_runs_pruned_and_resumes_for_each_task(path: Path, tmp_path: Path) -> None:
    config = task_config(path, tmp_path)
    data = task_datasets(config)
    first = tune(data, config, "search", trials=3, runner=run_in_threads)
    values = [t["value"] for t in first.trials if t["state"] == "COMPLETE"]
    best = min(values) if study_direction(config) == "minimize" else max(values)
    assert first.best_value == best
    if config.target.task == "regression":
        # The trial's value is the validation RMSE of the best round: far below the label's
        # spread, which is about 36.
        assert 5 < first.best_value < 30
    resumed = tune(data, config, "search", trials=4, runner=run_in_threads)
    assert (resumed.trials_run, resumed.trials_total) == (1, 4)


def test_a_regression_model_answers_values_and_keeps_its_task(tmp_path: Path) -> None:
    config = task_config(MINUTES, tmp_path)
    data = task_datasets(config)
    model = fit_model(data.x_train, data.y_train, PARAMS, 30, config)
    assert (model.task, model.classes) == ("regression", ())
    values = model.predict(data.x_holdout)
    assert values.shape == (len(data.x_holdout),)
    rmse = float(np.sqrt(np.mean((values - data.y_holdout.to_numpy()) ** 2)))
    assert rmse < 0.6 * data.y_holdout.std()  # it learnt the value, not a probability
    with pytest.raises(TypeError, match="predicts values"):
        model.predict_proba(data.x_holdout)
    files = model.write(tmp_path / "model")
    back = Scorer.read(files["booster"], files["encoder"])
    assert back.task == "regression"
    np.testing.assert_array_equal(back.predict(data.x_holdout), values)
    assert list(back.outputs(data.x_holdout).columns) == ["value"]


def test_a_multiclass_model_answers_each_class_and_keeps_its_names(tmp_path: Path) -> None:
    config = task_config(BAND, tmp_path)
    data = task_datasets(config)
    model = fit_model(data.x_train, data.y_train, PARAMS, 30, config)
    assert (model.task, model.classes) == ("multiclass", ("on-time", "late", "very-late"))
    probabilities = model.predict_proba(data.x_holdout)
    assert probabilities.shape == (len(data.x_holdout), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    accuracy = float((probabilities.argmax(axis=1) == data.y_holdout.to_numpy()).mean())
    assert accuracy > 0.6  # three classes: chance is about 0.33
    files = model.write(tmp_path / "model")
    back = Scorer.read(files["booster"], files["encoder"])
    assert back.classes == model.classes
    answer = back.outputs(data.x_holdout)
    assert list(answer.columns) == [
        "probability_on-time",
        "probability_late",
        "probability_very-late",
        CHOSEN_CLASS,
    ]
    chosen = np.array(model.classes)[probabilities.argmax(axis=1)]
    assert (answer[CHOSEN_CLASS].to_numpy() == chosen).all()
