"""A regression and a multiclass model in a real MLflow registry (SQLite): registered from code
with no pickle, their signature follows the task, and `mlflow.pyfunc.load_model(
"models:/<name>@champion")` answers what `perennial predict` writes for the same rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig
from tasks.data.features import model_inputs
from tasks.learn.scorer import CHOSEN_CLASS
from tasks.learn.train import fit_model
from tasks.registry.client import CHAMPION, TRAINING_KEY_TAG, connect
from tasks.registry.model_store import load_model, log_and_register
from tasks.serve.predict import registry_models, score_frame
from tests.unit.test_target_training import BAND, MINUTES, PARAMS, task_config, task_datasets

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def champion_of(config: PerennialConfig) -> tuple[pd.DataFrame, str]:
    """A model of the config's task registered and made champion: (its holdout rows, version)."""
    data = task_datasets(config)
    model = fit_model(data.x_train, data.y_train, PARAMS, 30, config)
    found = log_and_register(config, model, data.x_holdout, {}, {}, {TRAINING_KEY_TAG: "k"}, {})
    connect(config).set_registered_model_alias(config.model_name, CHAMPION, found.version)
    return data.x_holdout, found.version


@pytest.mark.parametrize("path", [MINUTES, BAND])
def test_the_pyfunc_champion_answers_what_perennial_predict_writes(
    path: Path, tmp_path: Path
) -> None:
    import mlflow.pyfunc

    config = task_config(path, tmp_path)
    x, version = champion_of(config)
    frame = x.assign(**{config.time.column: pd.Timestamp("2013-03-01", tz="UTC")})
    written = score_frame(frame, config, registry_models(config))

    mlflow.set_tracking_uri(config.tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{config.model_name}@{CHAMPION}")
    answer = pyfunc.predict(model_inputs(frame, config))  # what predict feeds its model
    outputs = pyfunc.metadata.get_output_schema().input_names()
    if config.target.task == "regression":
        np.testing.assert_allclose(np.asarray(answer), written["champion_value"], rtol=1e-6)
        assert load_model(config, version).task == "regression"
    else:
        classes = config.target.classes or []
        assert list(answer.columns) == [*(f"probability_{c}" for c in classes), CHOSEN_CLASS]
        assert outputs == list(answer.columns)  # the signature names each output
        for column in answer.columns:
            mine = written[f"champion_{column}"]
            if column == CHOSEN_CLASS:
                assert (answer[column].to_numpy() == mine.to_numpy()).all()
            else:
                np.testing.assert_allclose(answer[column], mine, rtol=1e-6)
        assert set(written["champion_predicted_class"]) <= set(classes)
