"""Training's fast path (encode once to float32, QuantileDMatrix, xgboost.train) against the
scikit-learn pipeline's own fit, which Perennial used before: same codes, trees and scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.learn.model import (
    encode,
    encoded_names,
    encoded_types,
    fit_encoder,
    make_encoder,
    xgb_classifier,
)
from tasks.learn.train import fit_model
from tests.conftest import FLIGHTS
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

    assert encoded_names(fast) == list(full.get_feature_names_out())
    expected = full.transform(scored).to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(encode(fast, scored), expected)  # NaN == NaN here
    assert np.isnan(encode(fast, scored)[:5, 0]).all()  # unseen -> missing, as the encoder does
    np.testing.assert_array_equal(fast.transform(scored).to_numpy(dtype=np.float32), expected)


def test_fit_model_grows_the_trees_the_pipeline_fit_grew(config: PerennialConfig) -> None:
    from sklearn.pipeline import Pipeline

    data = synthetic_datasets(config, rows=1500, seed=3)
    x, y = with_gaps(data.x_train, config), data.y_train
    types = encoded_types(fit_encoder(config, x))
    assert types[: len(config.features.categorical)] == ["c"] * len(config.features.categorical)
    before = Pipeline(
        [("encode", make_encoder(config)), ("model", xgb_classifier(PARAMS, 25, 2, 42, types))]
    ).fit(x, y)

    model = fit_model(x, y, PARAMS, 25, config)

    scored = with_gaps(data.x_holdout, config)
    np.testing.assert_allclose(
        model.predict_proba(scored)[:, 1], before.predict_proba(scored)[:, 1], rtol=0, atol=1e-6
    )
    booster = model.named_steps["model"].get_booster()
    assert booster.feature_names == before.named_steps["model"].get_booster().feature_names
    assert booster.feature_types == types  # categorical splits on the category codes
    assert booster.num_boosted_rounds() == 25
    assert model.named_steps["model"].n_classes_ == 2


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
        encode(encoder, x), encoder.transform(x).to_numpy(dtype=np.float32)
    )
