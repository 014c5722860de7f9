"""Model: what a Perennial model is, for the search and the final fit alike: category encoding
then an XGBoost model whose objective follows the target's task (`task_objective`), which
training returns as a `tasks.learn.scorer.Scorer` (the encoder's state and the booster: what
the registry stores, with no pickle).

Training does not push its rows through a scikit-learn pipeline: `fit_encoder` fits scikit-learn's
encoder on one row per category combination and keeps its state, whose `encode` turns a frame into
the float32 matrix XGBoost bins, once, with pandas' hashed category codes: the encoder's own
values (`tests/unit/test_model.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.learn.device import xgboost_module
from tasks.learn.scorer import CATEGORY, NUMBER, EncoderState


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


def fit_encoder(config: PerennialConfig, x: pd.DataFrame) -> EncoderState:
    """The encoder's state fitted on `x`. A ColumnTransformer's fit transforms every row through
    Python-level lookups (minutes and gigabytes at 10M rows); fitting it on one row per
    combination of categories learns the same categories and columns. The fitted transformer
    itself is dropped: `EncoderState.encode` gives its values (`tests/unit/test_model.py`)."""
    categorical = config.features.categorical
    rows = x.drop_duplicates(subset=categorical) if categorical else x.iloc[:1]
    return encoder_state(make_encoder(config).fit(rows))


def encoder_state(encoder: Any) -> EncoderState:
    """A fitted `make_encoder` as plain data: its output columns in order, each categorical
    column's categories in code order (missing excluded), and XGBoost's type of each column:
    "c" for category codes, so that trees split on sets of categories rather than on ranges of
    arbitrary codes; "float" for the rest. On the flights job (40 trials, holdout 2013-12) codes
    read as numbers scored AUC 0.7068, native categorical splits 0.7197."""
    categories: dict[str, tuple[Any, ...]] = {}
    for name, fitted, columns in encoder.transformers_:
        # A dataset with no categorical feature leaves that transformer unfitted (no categories_).
        if name == "categorical" and len(columns):
            for column, values in zip(columns, fitted.categories_, strict=True):
                categories[column] = tuple(v for v in values if v == v)  # no NaN
    names = tuple(str(name) for name in encoder.get_feature_names_out())
    types = tuple(CATEGORY if name in categories else NUMBER for name in names)
    return EncoderState(names, categories, types)


def categorical_types(feature_types: Sequence[str] | None) -> bool:
    """Whether XGBoost must be told to expect category codes among these column types."""
    return bool(feature_types and CATEGORY in feature_types)


def matrix_spec(encoder: EncoderState) -> dict[str, Any]:
    """Keyword arguments of an XGBoost matrix of `encoder.encode`'s output: column names and
    types."""
    return {
        "feature_names": list(encoder.columns),
        "feature_types": list(encoder.feature_types),
        "enable_categorical": True,
    }


def xgb_classifier(
    params: dict[str, Any],
    n_estimators: int,
    threads: int,
    seed: int,
    feature_types: list[str] | None = None,
    **extra: Any,
) -> Any:
    """The scikit-learn classifier that grows the trees `native_params` grows (the baseline of
    `benchmarks/scale.py` and of `tests/unit/test_model.py`); `feature_types` as
    `EncoderState.feature_types` gives them."""
    return xgboost_module().XGBClassifier(
        **params,
        n_estimators=n_estimators,
        tree_method="hist",
        n_jobs=threads,
        random_state=seed,
        feature_types=feature_types,
        enable_categorical=categorical_types(feature_types),
        **extra,
    )


BINARY_OBJECTIVE: dict[str, Any] = {"objective": "binary:logistic"}

# XGBoost's evaluation metric that tracks each primary metric during the search (early stopping
# and pruning watch it, and it is the trial's value). Multiclass `auc` is XGBoost's one-vs-rest
# AUC weighted by class share; the holdout judges by the macro AUC.
SEARCH_METRICS = {
    "roc_auc": "auc",
    "log_loss": "logloss",
    "macro_auc": "auc",
    "multiclass_log_loss": "mlogloss",
    "rmse": "rmse",
    "mae": "mae",
    "mape": "mape",
}


# How a person reads each search metric (the trial values, `validation_<metric>` on a version).
SEARCH_TITLES = {
    "auc": "AUC",
    "logloss": "log loss",
    "mlogloss": "log loss",
    "rmse": "RMSE",
    "mae": "MAE",
    "mape": "MAPE",
}


def task_objective(config: PerennialConfig) -> dict[str, Any]:
    """XGBoost's objective for the target's task: binary:logistic; multi:softprob with one
    probability per class; reg:squarederror or reg:pseudohubererror
    (`target.regression_objective`)."""
    target = config.target
    if target.task == "multiclass":
        return {"objective": "multi:softprob", "num_class": len(target.classes or [])}
    if target.task == "regression":
        return {"objective": f"reg:{target.regression_objective}"}
    return dict(BINARY_OBJECTIVE)


def search_metric(config: PerennialConfig) -> str:
    """XGBoost's `eval_metric` for the search: the one that tracks `primary_metric`."""
    return SEARCH_METRICS[config.primary_metric]


def native_params(
    params: dict[str, Any],
    threads: int,
    seed: int,
    device: str = "cpu",
    objective: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Booster parameters of `xgb_classifier(params, ...)` for `xgboost.train` (the scikit-learn
    names are aliases XGBoost accepts), so both APIs grow the same trees. `device`: as
    `tasks.learn.device.training_device` checked it (the stored booster predicts on the CPU).
    `objective`: `task_objective` of the config (default: binary)."""
    return {
        **(objective or BINARY_OBJECTIVE),
        "tree_method": "hist",
        "device": device,
        "nthread": threads,
        "seed": seed,
        **params,
    }
