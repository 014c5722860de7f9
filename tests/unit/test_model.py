"""Training's fast path (encode once to float32, QuantileDMatrix, xgboost.train) against the
scikit-learn pipeline's own fit, which Perennial used before: same codes, trees and scores; the
encoder's state as JSON and the booster as UBJSON, which is what the registry keeps; and the
model's code, which MLflow runs, importing nothing of Perennial."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.learn.model import fit_encoder, make_encoder, xgb_classifier
from tasks.learn.scorer import EncoderState, ModelFileError, Scorer
from tasks.learn.train import fit_model
from tests.conftest import FLIGHTS, ROOT
from tests.unit.test_tune import synthetic_datasets

PARAMS = {"max_depth": 4, "learning_rate": 0.2, "subsample": 0.8, "colsample_bytree": 0.9}


@pytest.fixture(scope="module")
def config() -> PerennialConfig:
    return load_config(FLIGHTS)


def with_gaps(x: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    """Missing values in every column, and a category the training rows never had."""
    x = x.copy()
    for offset, column in enumerate(x.columns):
        x.loc[x.index[offset::17], column] = np.nan
    x.loc[x.index[:5], config.features.categorical[0]] = "never-seen"
    return x


def test_encode_gives_the_pipeline_encoders_values(config: PerennialConfig) -> None:
    data = synthetic_datasets(config, rows=600)
    train = with_gaps(data.x_train, config).iloc[10:]  # "never-seen" only in the scored rows
    scored = with_gaps(data.x_holdout, config)

    full = make_encoder(config).fit(train)  # the encoder fitted over every row, as before
    fast = fit_encoder(config, train)

    assert list(fast.columns) == list(full.get_feature_names_out())
    expected = full.transform(scored).to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(fast.encode(scored), expected)  # NaN == NaN here
    assert np.isnan(fast.encode(scored)[:5, 0]).all()  # unseen -> missing, as the encoder does
    # What the registry keeps of it, read back, encodes the same.
    again = EncoderState.from_json(fast.to_json())
    assert again == fast
    np.testing.assert_array_equal(again.encode(scored), expected)


def test_fit_model_grows_the_trees_the_pipeline_fit_grew(config: PerennialConfig) -> None:
    from sklearn.pipeline import Pipeline

    data = synthetic_datasets(config, rows=1500, seed=3)
    x, y = with_gaps(data.x_train, config), data.y_train
    types = list(fit_encoder(config, x).feature_types)
    assert types[: len(config.features.categorical)] == ["c"] * len(config.features.categorical)
    before = Pipeline(
        [("encode", make_encoder(config)), ("model", xgb_classifier(PARAMS, 25, 2, 42, types))]
    ).fit(x, y)

    model = fit_model(x, y, PARAMS, 25, config)

    scored = with_gaps(data.x_holdout, config)
    np.testing.assert_allclose(
        model.score(scored), before.predict_proba(scored)[:, 1], rtol=0, atol=1e-6
    )
    np.testing.assert_array_equal(model.predict_proba(scored)[:, 1], model.score(scored))
    booster = model.booster
    assert booster.feature_names == before.named_steps["model"].get_booster().feature_names
    assert booster.feature_types == types  # categorical splits on the category codes
    assert booster.num_boosted_rounds() == 25


def test_a_dataset_without_categorical_features_encodes_its_numbers(
    config: PerennialConfig,
) -> None:
    numeric_only = config.model_copy(
        update={"features": config.features.model_copy(update={"categorical": []})}
    )
    data = synthetic_datasets(config, rows=300)
    x = data.x_train[numeric_only.features.numeric]
    encoder = fit_encoder(numeric_only, x)
    np.testing.assert_array_equal(
        encoder.encode(x), make_encoder(numeric_only).fit(x).transform(x).to_numpy(np.float32)
    )
    assert EncoderState.from_json(encoder.to_json()) == encoder


def test_the_model_written_and_read_back_scores_the_same(
    config: PerennialConfig, tmp_path: Path
) -> None:
    data = synthetic_datasets(config, rows=800, seed=5)
    model = fit_model(data.x_train, data.y_train, PARAMS, 15, config)
    files = model.write(tmp_path)
    assert sorted(path.name for path in files.values()) == ["booster.ubj", "encoder.json"]
    again = Scorer.read(files["booster"], files["encoder"])
    scored = with_gaps(data.x_holdout, config)
    np.testing.assert_array_equal(again.score(scored), model.score(scored))
    assert again.booster.feature_types == model.booster.feature_types


def edited(text: str, change: Any) -> str:
    state = json.loads(text)
    change(state)
    return json.dumps(state)


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda s: edited(s, lambda d: d.update(format="other/1")), "not a perennial.encoder/1"),
        (lambda s: edited(s, lambda d: d["feature_types"].__setitem__(0, "float")), "disagree"),
        (lambda s: edited(s, lambda d: d["categorical"].pop()), "disagree"),
        (lambda s: edited(s, lambda d: d["feature_types"].pop()), "malformed"),
        (lambda s: edited(s, lambda d: d["categories"]["carrier"].append("a")), "repeats"),
        (lambda s: edited(s, lambda d: d["categories"]["carrier"].append([1])), "only text"),
        (lambda s: s[:-3], "not JSON"),
    ],
)
def test_an_encoder_state_that_is_not_what_perennial_writes_is_refused(
    config: PerennialConfig, change: Any, complaint: str
) -> None:
    data = synthetic_datasets(config, rows=300)
    text = fit_encoder(config, data.x_train).to_json()
    EncoderState.from_json(text)  # as written: read back
    with pytest.raises(ModelFileError, match=complaint):
        EncoderState.from_json(change(text))


HEAVY = ("prefect", "sklearn", "optuna", "great_expectations", "tasks.core", "tasks.registry")


def modules_after(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_the_model_code_imports_nothing_of_perennial_nor_anything_heavy() -> None:
    # As MLflow runs it from a version's folder (`mlflow.pyfunc.load_model`): a pyfunc model.
    loaded = modules_after(
        "from mlflow.models.utils import _load_model_code_path\n"
        "model = _load_model_code_path('tasks/learn/scorer.py', None)\n"
        "assert type(model).__name__ == 'PerennialModel', model"
    )
    assert not [m for m in loaded if m.startswith(HEAVY)]
    # As Perennial imports it: plain classes, no MLflow, no XGBoost until a booster is read.
    imported = modules_after("import tasks.learn.scorer")
    assert not [m for m in imported if m.startswith((*HEAVY, "mlflow", "xgboost"))]
