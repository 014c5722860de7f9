"""Train: the final XGBoost model on every batch before the holdout, with the search's best
parameters, as one scikit-learn pipeline (category encoding + classifier) so that the registry
holds everything needed to score raw rows."""

from __future__ import annotations

import os
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PerennialConfig
from tasks.features import Datasets
from tasks.model import make_encoder, xgb_classifier
from tasks.tune import TuneResult


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
