"""Explain: why a model decides, with SHAP values computed by XGBoost itself (`pred_contribs`).

A row's contributions plus the bias sum to the model's margin for that row: the log-odds of a
binary model ("this feature moved the log-odds by +0.4"), the predicted value of a regression
("... moved the delay by +4.2 minutes"), and for a multiclass model the margin of the class it
chose for that row (its reasons are that class's; a version's importance is measured likewise).
Contributions are reported per original feature: the columns the encoder makes from one feature
(its ordinal code today, one column per value were it one-hot) are summed, so a user never
sees an encoded column name.

Exact SHAP costs about 3 to 6 ms per row on a 300-round model, so the global importance
of a version is measured on a fixed sample of its holdout, and a big batch is explained with
XGBoost's approximate contributions (Saabas), which keep the same additivity.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.learn.device import xgboost_module
from tasks.learn.model import categorical_types
from tasks.learn.scorer import Scorer

SAMPLE_ROWS = 2000  # rows of the holdout behind a version's global importance, at most
SAMPLE_ROWS_LEAST = 200  # ... and at least, however deep the trees
# Exact TreeSHAP costs about leaves x depth^2 per tree and row; this many of those units take
# about 5 s on 2 busy cores (measured: 300 rounds of depth 4, 1.2 ms a row; depth 8, 16 ms).
SHAP_BUDGET = 500_000_000
# Rows from which explanations are approximate. Measured on 2 busy cores, 300 rounds of depth
# 6: exact 5.5 ms per row, approximate 0.05 ms, both adding up to the margin within 1e-5.
APPROX_ABOVE = 2000  # a batch (`predict --explain`)
APPROX_ABOVE_SERVED = 100  # a request: exact costs at most about 0.5 s of the event loop
REASONS = 3  # reasons per explained row
TOP_FEATURES = 10  # features shown in the model card


def original_feature(column: str, features: Sequence[str]) -> str:
    """The feature an encoded column comes from: itself, else the longest feature that
    prefixes it as `<feature>_<value>` (one-hot naming)."""
    if column in features:
        return column
    owners = [f for f in features if column.startswith(f"{f}_")]
    return max(owners, key=len) if owners else column


def feature_groups(columns: Sequence[str], features: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Original feature names (in first-seen column order) and, for each column, the index of
    its feature: `np.add.at` with it sums a row's encoded contributions per feature."""
    names: list[str] = []
    index = np.empty(len(columns), dtype=np.intp)
    for j, column in enumerate(columns):
        owner = original_feature(column, features)
        if owner not in names:
            names.append(owner)
        index[j] = names.index(owner)
    return names, index


def group_contributions(contributions: np.ndarray, index: np.ndarray, width: int) -> np.ndarray:
    """Rows x encoded columns -> rows x original features (sums of each feature's columns)."""
    grouped = np.zeros((contributions.shape[0], width), dtype=np.float64)
    np.add.at(grouped.T, index, contributions.T)
    return grouped


def booster_contributions(
    booster: Any, matrix: np.ndarray, columns: Sequence[str], rounds: tuple[int, int], approx: bool
) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values (rows x columns) and bias (rows) of the booster on its own input matrix; a
    multiclass booster's have one more axis, the class: rows x classes x columns, rows x
    classes."""
    DMatrix = xgboost_module().DMatrix

    # The booster's own column types: category codes of a model with categorical splits.
    types = booster.feature_types
    data = DMatrix(
        matrix,
        feature_names=list(columns),
        feature_types=types,
        enable_categorical=categorical_types(types),
        missing=np.nan,
    )
    out = np.asarray(
        booster.predict(data, pred_contribs=True, approx_contribs=approx, iteration_range=rounds),
        dtype=np.float64,
    )
    return out[..., :-1], out[..., -1]


@dataclass(frozen=True)
class Contributions:
    """SHAP values per original feature of some rows, and each row's bias (base margin)."""

    features: list[str]
    values: np.ndarray  # rows x features
    bias: np.ndarray  # rows

    def margin(self) -> np.ndarray:
        return self.values.sum(axis=1) + self.bias


def contributions(
    model: Scorer, config: PerennialConfig, x: pd.DataFrame, approx: bool | None = None
) -> Contributions:
    """SHAP values of a fitted model on model inputs `x` (as `model_inputs` gives them),
    per original feature. `approx`: None picks approximate above APPROX_ABOVE rows."""
    columns = list(model.encoder.columns)
    values, bias = booster_contributions(
        model.booster,
        model.encoder.encode(x),
        columns,
        model.iteration_range,
        len(x) > APPROX_ABOVE if approx is None else approx,
    )
    if values.ndim == 3:  # multiclass: the contributions to each row's chosen class
        rows = np.arange(len(values))
        chosen = np.argmax(bias + values.sum(axis=2), axis=1)
        values, bias = values[rows, chosen], bias[rows, chosen]
    names, index = feature_groups(columns, config.features.columns)
    return Contributions(names, group_contributions(values, index, len(names)), bias)


def top_reasons(values: np.ndarray, features: Sequence[str], count: int = REASONS) -> list[Any]:
    """Each row's `count` largest contributions by size: [{feature, contribution}, ...]."""
    order = np.argsort(-np.abs(values), axis=1, kind="stable")[:, :count]
    return [
        [{"feature": features[j], "contribution": float(row[j])} for j in picks]
        for row, picks in zip(values, order, strict=True)
    ]


def reason_columns(reasons: list[Any], count: int = REASONS) -> dict[str, list[Any]]:
    """Reasons as flat columns for a predictions table: reason_<k>_feature, _contribution."""
    columns: dict[str, list[Any]] = {}
    for k in range(count):
        columns[f"reason_{k + 1}_feature"] = [
            r[k]["feature"] if k < len(r) else None for r in reasons
        ]
        columns[f"reason_{k + 1}_contribution"] = [
            r[k]["contribution"] if k < len(r) else np.nan for r in reasons
        ]
    return columns


def shap_cost_per_row(booster: Any, rounds: tuple[int, int]) -> int:
    """Exact TreeSHAP work for one row: sum over the trees used of leaves x depth^2."""
    trees = booster.get_dump()
    if rounds != (0, 0):
        trees = trees[rounds[0] : rounds[1]]  # one tree per round for a binary classifier
    cost = 0
    for tree in trees:
        depths = [line.count("\t") for line in tree.splitlines() if "leaf=" in line]
        cost += len(depths) * (max(depths, default=0) + 1) ** 2
    return max(cost, 1)


def sample_size(model: Scorer) -> int:
    """Holdout rows to explain exactly: as many as the budget buys, between the bounds, so a
    deep model costs the registration seconds, not minutes. Depends only on the model."""
    affordable = SHAP_BUDGET // shap_cost_per_row(model.booster, model.iteration_range)
    return int(min(SAMPLE_ROWS, max(SAMPLE_ROWS_LEAST, affordable)))


def explanation_sample(x: pd.DataFrame, seed: int, rows: int = SAMPLE_ROWS) -> pd.DataFrame:
    """A fixed sample of the rows (all of them when few): the same data and seed give the
    same sample, so a version's importance can be measured again."""
    return x if len(x) <= rows else x.sample(n=rows, random_state=seed).sort_index()


def global_importance(contrib: Contributions) -> pd.Series:
    """Mean |SHAP| per original feature, largest first."""
    mean = np.abs(contrib.values).mean(axis=0) if len(contrib.values) else np.zeros(0)
    return pd.Series(mean, index=contrib.features, name="mean_abs_shap").sort_values(
        ascending=False, kind="stable"
    )


# What a contribution is measured in, by task (the plot's axis).
MARGIN_UNITS = {"binary": "log-odds", "multiclass": "chosen class's margin", "regression": "value"}


def importance_png(
    importance: pd.Series, title: str, path: Path, units: str = MARGIN_UNITS["binary"]
) -> Path:
    """A horizontal bar chart of mean |SHAP|, largest on top."""
    import matplotlib

    matplotlib.use("Agg")  # no display: runs in workers and tests
    import matplotlib.pyplot as plt

    shown = importance.head(20)[::-1]
    figure, axes = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.2))
    axes.barh(list(shown.index), shown.to_numpy())
    axes.set_xlabel(f"mean |SHAP value| ({units})")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


@dataclass
class Explanation:
    """A version's global importance on its holdout sample, and where its PNG was drawn."""

    importance: pd.Series
    rows: int
    plot: Path

    def top(self, count: int = TOP_FEATURES) -> list[tuple[str, float]]:
        return [(str(k), float(v)) for k, v in self.importance.head(count).items()]

    def table_csv(self) -> str:
        return self.importance.rename_axis("feature").to_csv()


def explain_version(model: Scorer, config: PerennialConfig, x_holdout: pd.DataFrame) -> Explanation:
    sample = explanation_sample(x_holdout, config.hpo.seed, sample_size(model))
    importance = global_importance(contributions(model, config, sample, approx=False))
    folder = Path(tempfile.mkdtemp(prefix="perennial-explain-"))
    plot = importance_png(
        importance,
        f"{config.model_name}: mean |SHAP| on {len(sample)} holdout rows",
        folder / "shap_importance.png",
        MARGIN_UNITS[model.task],
    )
    return Explanation(importance, len(sample), plot)


explain_task = task(name="explain-model", cache_policy=NO_CACHE)(explain_version)
