"""Train: the final XGBoost model on every batch before the holdout, with the search's best
parameters, as one scikit-learn pipeline (category encoding + classifier) so that the registry
holds everything needed to score raw rows."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PerennialConfig
from tasks.features import Datasets
from tasks.tune import TuneResult, xgb_classifier


def make_encoder(config: PerennialConfig) -> Any:
    """Categories -> ordinal codes (unseen and missing -> NaN, which XGBoost routes itself)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    spec = config.features
    encoder = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                    dtype=np.float64,
                ),
                spec.categorical,
            ),
        ],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    return encoder.set_output(transform="pandas")


def fit_model(
    x: pd.DataFrame, y: pd.Series, params: dict[str, Any], rounds: int, config: PerennialConfig
) -> Any:
    from sklearn.pipeline import Pipeline

    classifier = xgb_classifier(params, rounds, os.cpu_count() or 1, config.hpo.seed)
    return Pipeline([("encode", make_encoder(config)), ("model", classifier)]).fit(x, y)


def top_features(model: Any, count: int = 10) -> list[tuple[str, float]]:
    """Gain importance of the fitted pipeline's classifier, highest first."""
    gains = model.named_steps["model"].get_booster().get_score(importance_type="gain")
    return sorted(gains.items(), key=lambda item: item[1], reverse=True)[:count]


@task(name="train-model", cache_policy=NO_CACHE)
def train_task(data: Datasets, config: PerennialConfig, tuned: TuneResult) -> Any:
    return fit_model(data.x_fit, data.y_fit, tuned.best_params, tuned.best_rounds, config)
