"""Native scoring: a registered model taken apart into its booster and the encoder's category
codes (`ServedModel`), so that validated rows are scored with the booster's `inplace_predict`,
with no pandas frame per request. Warm-up proves that this fast path gives the batch path's
scores (`Scorer.score`) on the same rows, so a served score is the batch score; a version that
does not is never served.

Models come from `tasks.registry.model_store.load_model` only (the signed digest check)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import BaseModel

from tasks.core.config import PerennialConfig
from tasks.learn.explain import booster_contributions, feature_groups, top_reasons
from tasks.learn.scorer import Scorer, Task
from tasks.registry.model_store import load_model
from tasks.serve.request import RequestSchema

WARM_UP_ROUNDS = 50  # enough calls for the booster's first-call allocations to be behind us
WARM_UP_TOLERANCE = 1e-6


class WarmUpError(RuntimeError):
    """A loaded version whose fast path does not give its batch scores: never served."""


def encoder_categories(model: Scorer) -> dict[str, list[Any]]:
    """Categories of each categorical feature, in code order, as the model's encoder holds
    them."""
    return {column: list(values) for column, values in model.encoder.categories.items()}


def _time_feature(name: str, local: datetime) -> float:
    # As tasks.data.features.time_features derives them with pandas (Monday = 0).
    if name == "day_of_week":
        return float(local.weekday())
    if name == "day_of_month":
        return float(local.day)
    if name == "day_of_year":
        return float(local.timetuple().tm_yday)
    if name == "hour":
        return float(local.hour)
    return float(local.month)


@dataclass(frozen=True)
class ServedModel:
    """One registered version, ready to score validated rows natively."""

    alias: str
    version: str
    booster: Any
    iteration_range: tuple[int, int]
    columns: tuple[str, ...]  # booster input order (the encoder's output order)
    codes: dict[str, dict[Any, float]]  # categorical column -> value -> ordinal code
    time_column: str
    time_features: frozenset[str]
    zone: ZoneInfo
    features: tuple[str, ...] = ()  # original features, for explanations
    feature_index: tuple[int, ...] = ()  # booster column -> its index in `features`
    task: Task = "binary"  # the registered model's (tasks.learn.scorer.booster_task)
    classes: tuple[str, ...] = ()  # a multiclass model's, in output order

    def matrix(self, rows: Sequence[BaseModel]) -> np.ndarray:
        """The booster's input for validated rows: float64, NaN = missing (a null, or a category
        the training data never saw)."""
        out = np.empty((len(rows), len(self.columns)), dtype=np.float64)
        nan = float("nan")
        for i, row in enumerate(rows):
            local: datetime | None = None
            if self.time_features:
                stamp: datetime = getattr(row, self.time_column)
                if stamp.tzinfo is None:  # wall-clock time in the dataset's zone, as in batches
                    stamp = stamp.replace(tzinfo=self.zone)
                local = stamp.astimezone(self.zone)
            for j, column in enumerate(self.columns):
                if column in self.codes:
                    value = getattr(row, column)
                    out[i, j] = nan if value is None else self.codes[column].get(value, nan)
                elif local is not None and column in self.time_features:
                    out[i, j] = _time_feature(column, local)
                else:
                    value = getattr(row, column)
                    out[i, j] = nan if value is None else value
        return out

    def score(self, rows: Sequence[BaseModel]) -> np.ndarray:
        """Each row's scores, as `Scorer.score` gives them: the positive class's probability
        (binary), the value (regression), each class's probability (multiclass, rows x k)."""
        found = np.asarray(
            self.booster.inplace_predict(
                self.matrix(rows), iteration_range=self.iteration_range, missing=np.nan
            ),
            dtype=np.float64,
        )
        return found.reshape(len(rows), -1) if self.task == "multiclass" else found.reshape(-1)

    def answers(self, scores: np.ndarray, threshold: float) -> list[dict[str, Any]]:
        """Each row's answer, by task: the one place a served prediction is built (every
        protocol calls it). Binary: `score` and `label` (score >= threshold); regression:
        `value`; multiclass: `probabilities` by class and the chosen `class`."""
        if self.task == "regression":
            return [{"value": value} for value in scores.tolist()]
        if self.task == "multiclass":
            return [
                {
                    "probabilities": dict(zip(self.classes, row, strict=True)),
                    "class": self.classes[int(np.argmax(row))],
                }
                for row in scores.tolist()
            ]
        return [{"score": score, "label": int(score >= threshold)} for score in scores.tolist()]

    def reasons(self, rows: Sequence[BaseModel]) -> list[Any]:
        """Each row's top reasons: the original features with the largest SHAP values (signed,
        in log-odds). Only for requests that ask (`?explain=true`): it costs a DMatrix and a
        tree walk per row, which the plain scoring path never pays."""
        from tasks.learn.explain import APPROX_ABOVE_SERVED, group_contributions

        approx = len(rows) > APPROX_ABOVE_SERVED
        values, bias = booster_contributions(
            self.booster, self.matrix(rows), self.columns, self.iteration_range, approx
        )
        if values.ndim == 3:  # multiclass: the reasons for each row's chosen class
            chosen = np.argmax(bias + values.sum(axis=2), axis=1)
            values = values[np.arange(len(values)), chosen]
        grouped = group_contributions(
            values, np.asarray(self.feature_index, dtype=np.intp), len(self.features)
        )
        return top_reasons(grouped, self.features)


def served_model(config: PerennialConfig, model: Scorer, alias: str, version: str) -> ServedModel:
    """The native pieces of a registered model (encoder categories, booster)."""
    booster = model.booster
    # One thread per prediction: a request is a few rows, and the cores serve other requests.
    booster.set_param({"nthread": 1})
    categories = encoder_categories(model)
    features, index = feature_groups(booster.feature_names, config.features.columns)
    return ServedModel(
        alias=alias,
        version=version,
        booster=booster,
        iteration_range=model.iteration_range,
        columns=tuple(booster.feature_names),
        codes={
            column: {value: float(code) for code, value in enumerate(values)}
            for column, values in categories.items()
        },
        time_column=config.time.column,
        time_features=frozenset(config.features.time),
        zone=ZoneInfo(config.time.timezone),
        features=tuple(features),
        feature_index=tuple(int(i) for i in index),
        task=model.task,
        classes=model.classes,
    )


def warm_up_rows(config: PerennialConfig, categories: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Rows that exercise every path: each known category, an unknown one, nulls, numbers."""
    spec = config.features
    longest = max([len(values) for values in categories.values()] + [1])
    rows: list[dict[str, Any]] = []
    for i in range(longest + 2):
        row: dict[str, Any] = {}
        for k, column in enumerate(spec.numeric):
            row[column] = None if i == longest + 1 else float((i * 7 + k * 13) % 97)
        for column in spec.categorical:
            values = categories.get(column, [])
            row[column] = values[i] if i < len(values) else (None if i > longest else "?unseen?")
        if spec.time:
            row[config.time.column] = datetime(2024, 1 + i % 12, 1 + i % 28, i % 24, tzinfo=UTC)
        rows.append(row)
    return rows


def warm_up(
    config: PerennialConfig, scorer: Scorer, model: ServedModel, schema: RequestSchema
) -> None:
    """Score warm-up rows on the fast path until it is warm, and check its scores against the
    batch path's on the same rows: any difference refuses the version."""
    import pandas as pd

    from tasks.data.features import model_inputs
    from tasks.registry.metrics import scores

    raw = warm_up_rows(config, encoder_categories(scorer))
    rows = [schema.row.model_validate(row, strict=False) for row in raw]
    for _ in range(WARM_UP_ROUNDS):
        model.score(rows[:1])
    fast = model.score(rows)
    frame = pd.DataFrame(raw)
    if config.features.time:
        frame[config.time.column] = pd.to_datetime(frame[config.time.column], utc=True)
    batch = scores(scorer, model_inputs(frame, config), scorer.task)
    if not np.all(np.isfinite(fast)) or not np.allclose(
        fast, batch, rtol=0, atol=WARM_UP_TOLERANCE
    ):
        worst = float(np.nanmax(np.abs(fast - batch)))
        raise WarmUpError(
            f"v{model.version} of {config.model_name}: native scores differ from the batch scores "
            f"by up to {worst:.3g} on warm-up rows; not served"
        )


def load_served(
    config: PerennialConfig, alias: str, version: str
) -> tuple[ServedModel, RequestSchema]:
    """Load a version (its signed digest checked), build its fast path and schema, warm it
    up."""
    scorer = load_model(config, version)
    model = served_model(config, scorer, alias, version)
    schema = RequestSchema.build(config, encoder_categories(scorer))
    warm_up(config, scorer, model, schema)
    return model, schema
