"""Model: what a Perennial model is, for the search and the final fit alike: category encoding
then an XGBoost classifier."""

from __future__ import annotations

from typing import Any

import numpy as np

from tasks.config import PerennialConfig


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


def xgb_classifier(
    params: dict[str, Any], n_estimators: int, threads: int, seed: int, **extra: Any
) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(
        **params,
        n_estimators=n_estimators,
        tree_method="hist",
        n_jobs=threads,
        random_state=seed,
        **extra,
    )
