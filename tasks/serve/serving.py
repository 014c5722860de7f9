"""Serving: real-time scoring of the registry's champion (and, for A/B, its challenger).

Plain classes, no HTTP (the app is `flows/serve.py`). A request's rows are checked against a
pydantic model built from the config's features, turned into the matrix the booster expects
with the encoder's own category codes, and scored with the native XGBoost booster
(`inplace_predict`): no pandas and no pipeline per request. Warm-up proves that this fast path
gives the pipeline's scores on the same rows, so a served score is the batch score.

Models come from `tasks.registry.load_model` only (the sha256 check). `ModelSlot` holds the
loaded arms as one immutable `Arms`, replaced in a single assignment: a request reads the slot
once and is scored by the arms it read, whatever a swap does meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, create_model

from tasks.core.config import PerennialConfig
from tasks.learn.explain import booster_contributions, feature_groups, iteration_range, top_reasons
from tasks.notify.alerts import alert_swap_failed
from tasks.registry.client import CHALLENGER, CHAMPION, version_by_alias
from tasks.registry.model_store import load_model

log = logging.getLogger("perennial.serve")

WARM_UP_ROUNDS = 50  # enough calls for the booster's first-call allocations to be behind us
WARM_UP_TOLERANCE = 1e-6

# The booster reads its input as float32: a number beyond float32's range becomes infinite there,
# and explanations (a DMatrix) refuse it. A served number must be finite in float32 too.
LARGEST_SERVED_NUMBER = float(np.finfo(np.float32).max)
# Times that every path can hold: batch scoring keeps them as pandas nanosecond timestamps
# (1677-09-21 to 2262-04-11), and a day of margin keeps any time zone's local time in range.
EARLIEST_SERVED_TIME = datetime(1677, 9, 22, tzinfo=UTC)
LATEST_SERVED_TIME = datetime(2262, 4, 10, tzinfo=UTC)


class WarmUpError(RuntimeError):
    """A loaded version whose fast path does not give its pipeline's scores: never served."""


# --- input -------------------------------------------------------------------------------


def encoder_categories(pipeline: Any) -> dict[str, list[Any]]:
    """Categories of each categorical feature, in code order, as the fitted encoder holds them."""
    encoder = pipeline.named_steps["encode"]
    for name, fitted, columns in encoder.transformers_:
        if name == "categorical":
            return {
                column: [value for value in values if value == value]  # drop NaN (missing)
                for column, values in zip(columns, fitted.categories_, strict=True)
            }
    return {}


def _category_type(values: Sequence[Any]) -> Any:
    """JSON type of a categorical field: strings, unless the training data held numbers."""
    kinds: set[Any] = {int if isinstance(v, int | np.integer) else str for v in values}
    if kinds <= {str}:
        return str
    return int | str


FiniteNumber = Annotated[
    float,
    Field(allow_inf_nan=False, ge=-LARGEST_SERVED_NUMBER, le=LARGEST_SERVED_NUMBER),
]


def _time_in_range(stamp: datetime) -> datetime:
    """A time the scoring paths can convert: a naive one is read in UTC for the check, and the
    zone's offset (at most a day) is inside the margin of the bounds."""
    utc = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp
    try:
        inside = EARLIEST_SERVED_TIME <= utc <= LATEST_SERVED_TIME
    except OverflowError:  # an offset that moves it past year 1 or 9999
        inside = False
    if not inside:
        raise ValueError(
            f"time outside {EARLIEST_SERVED_TIME:%Y-%m-%d} to {LATEST_SERVED_TIME:%Y-%m-%d}: "
            "send the time the row was scheduled or measured"
        )
    return stamp


ServedTime = Annotated[datetime, AfterValidator(_time_in_range)]


def _finite_key(value: str | int | float | None) -> str | int | float | None:
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError("a key must be a finite number or a string: send the row's id")
    return value


# Checked after the union, so that a refusal names the column (not a member of the union).
KeyValue = Annotated[str | int | float | None, AfterValidator(_finite_key)]


def row_model(config: PerennialConfig, categories: dict[str, list[Any]]) -> type[BaseModel]:
    """The pydantic model of one input row: every raw column the features are built from,
    required (null allowed where the model handles a missing value), the optional key columns
    (`validation.key_columns`), nothing else.
    Strict, so that `"12"` is not a number and `12` is not a carrier; numbers finite (no NaN,
    Infinity or 1e400, which JSON parsing turns into infinity) and times within the range every
    scoring path holds, so that a row that passes is a row that scores and explains."""
    spec = config.features
    fields: dict[str, Any] = {}
    for column in spec.numeric:
        fields[column] = (FiniteNumber | None, ...)
    for column in spec.categorical:
        fields[column] = (_category_type(categories.get(column, [])) | None, ...)
    if spec.time:
        fields[config.time.column] = (ServedTime, ...)
    # Key columns may come along, unused for scoring: a sampled live row keeps them, so the
    # monitor can join it to its label when the batch lands (tasks.watch.arms).
    for column in config.validation.key_columns:
        if column not in fields:
            fields[column] = (KeyValue, None)
    return create_model("Row", __config__=ConfigDict(extra="forbid", strict=True), **fields)


@dataclass(frozen=True)
class RequestSchema:
    """Validators of a request body: one row (a JSON object) or many (a JSON list)."""

    row: type[BaseModel]
    one: TypeAdapter[Any]
    many: TypeAdapter[Any]

    @classmethod
    def build(cls, config: PerennialConfig, categories: dict[str, list[Any]]) -> RequestSchema:
        row = row_model(config, categories)
        many = Annotated[list[row], Field(min_length=1, max_length=config.serve.max_rows)]  # type: ignore[valid-type]
        return cls(row, TypeAdapter(row), TypeAdapter(many))

    def parse(self, body: bytes) -> list[BaseModel]:
        """Rows of a JSON body; raises pydantic's ValidationError naming the field (and, for a
        list, the row index). The first byte picks the shape, so errors name one shape only."""
        if body.lstrip()[:1] == b"[":
            return list(self.many.validate_json(body))
        return [self.one.validate_json(body)]


# --- scoring -----------------------------------------------------------------------------


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

    def matrix(self, rows: Sequence[BaseModel]) -> np.ndarray:
        """The booster's input for validated rows: float64 like the pipeline's, NaN = missing
        (a null, or a category the training data never saw)."""
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
        """Probability of the positive class for each row."""
        return np.asarray(
            self.booster.inplace_predict(
                self.matrix(rows), iteration_range=self.iteration_range, missing=np.nan
            ),
            dtype=np.float64,
        ).reshape(-1)

    def reasons(self, rows: Sequence[BaseModel]) -> list[Any]:
        """Each row's top reasons: the original features with the largest SHAP values (signed,
        in log-odds). Only for requests that ask (`?explain=true`): it costs a DMatrix and a
        tree walk per row, which the plain scoring path never pays."""
        from tasks.learn.explain import APPROX_ABOVE_SERVED, group_contributions

        approx = len(rows) > APPROX_ABOVE_SERVED
        values, _ = booster_contributions(
            self.booster, self.matrix(rows), self.columns, self.iteration_range, approx
        )
        grouped = group_contributions(
            values, np.asarray(self.feature_index, dtype=np.intp), len(self.features)
        )
        return top_reasons(grouped, self.features)


def served_model(config: PerennialConfig, pipeline: Any, alias: str, version: str) -> ServedModel:
    """The native pieces of a registered pipeline (encoder categories, booster)."""
    booster = pipeline.named_steps["model"].get_booster()
    # One thread per prediction: a request is a few rows, and the cores serve other requests.
    booster.set_param({"nthread": 1})
    categories = encoder_categories(pipeline)
    features, index = feature_groups(booster.feature_names, config.features.columns)
    return ServedModel(
        alias=alias,
        version=version,
        booster=booster,
        iteration_range=iteration_range(pipeline),
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
    config: PerennialConfig, pipeline: Any, model: ServedModel, schema: RequestSchema
) -> None:
    """Score warm-up rows on the fast path until it is warm, and check its scores against the
    pipeline's (the batch path) on the same rows: any difference refuses the version."""
    import pandas as pd

    from tasks.data.features import model_inputs
    from tasks.registry.metrics import predict

    raw = warm_up_rows(config, encoder_categories(pipeline))
    rows = [schema.row.model_validate(row, strict=False) for row in raw]
    for _ in range(WARM_UP_ROUNDS):
        model.score(rows[:1])
    fast = model.score(rows)
    frame = pd.DataFrame(raw)
    if config.features.time:
        frame[config.time.column] = pd.to_datetime(frame[config.time.column], utc=True)
    batch = predict(pipeline, model_inputs(frame, config))
    if not np.all(np.isfinite(fast)) or not np.allclose(
        fast, batch, rtol=0, atol=WARM_UP_TOLERANCE
    ):
        worst = float(np.nanmax(np.abs(fast - batch)))
        raise WarmUpError(
            f"v{model.version} of {config.model_name}: native scores differ from the pipeline's "
            f"by up to {worst:.3g} on warm-up rows; not served"
        )


def load_served(
    config: PerennialConfig, alias: str, version: str
) -> tuple[ServedModel, RequestSchema]:
    """Load a version (sha256-checked), build its fast path and schema, warm it up."""
    pipeline = load_model(config, version)
    model = served_model(config, pipeline, alias, version)
    schema = RequestSchema.build(config, encoder_categories(pipeline))
    warm_up(config, pipeline, model, schema)
    return model, schema


# --- the slot and A/B routing ------------------------------------------------------------


@dataclass(frozen=True)
class Arms:
    """What serves right now: never mutated, only replaced."""

    champion: ServedModel | None = None
    challenger: ServedModel | None = None
    schema: RequestSchema | None = None  # the champion's


class ModelSlot:
    """The served arms behind one reference: `swap` is one assignment, atomic under the GIL,
    so a reader sees the old arms or the new ones, never half of each."""

    def __init__(self) -> None:
        self._arms = Arms()

    @property
    def arms(self) -> Arms:
        return self._arms

    def swap(self, arms: Arms) -> None:
        self._arms = arms


def key_fraction(key: str) -> float:
    """A request key's fixed place in [0, 1): the same key always lands in the same arm."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(arms: Arms, share: float, key: str | None) -> ServedModel | None:
    """The arm that scores a request: the challenger for a `share` of keys (of requests, when
    no key is given), else the champion."""
    if arms.challenger is None or share <= 0:
        return arms.champion
    place = key_fraction(key) if key is not None else random.random()
    return arms.challenger if place < share else arms.champion


# --- hot swap ----------------------------------------------------------------------------


Loader = Callable[[PerennialConfig, str, str], tuple[ServedModel, RequestSchema]]
AliasLookup = Callable[[PerennialConfig, str], Any]


class AliasPoller:
    """Checks the `champion` and `challenger` aliases every `serve.poll_seconds`; a moved alias
    is loaded and warmed up off the request path, then swapped in with the other arm in one
    step. A version that fails to load or warm up is not swapped in: logged at ERROR (and
    counted by `on_failure`), and the arm it was meant to replace keeps serving."""

    def __init__(
        self,
        config: PerennialConfig,
        slot: ModelSlot,
        loader: Loader = load_served,
        lookup: AliasLookup = version_by_alias,
        on_swap: Callable[[Arms], None] | None = None,
        on_failure: Callable[[str, str], None] | None = None,
    ) -> None:
        self.config, self.slot = config, slot
        self._loader, self._lookup = loader, lookup
        self._on_swap, self._on_failure = on_swap, on_failure
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _wanted(self) -> dict[str, str | None]:
        champion = self._lookup(self.config, CHAMPION)
        challenger = self._lookup(self.config, CHALLENGER)
        wanted = {CHAMPION: champion.version if champion else None, CHALLENGER: None}
        # A challenger that is the champion is no second arm (as in batch shadow scoring).
        if challenger is not None and challenger.version != wanted[CHAMPION]:
            wanted[CHALLENGER] = challenger.version
        return wanted

    def refresh(self) -> bool:
        """One check of the aliases; True when the served arms changed."""
        arms = self.slot.arms
        current = {CHAMPION: arms.champion, CHALLENGER: arms.challenger}
        schema = arms.schema
        chosen: dict[str, ServedModel | None] = dict(current)
        for alias, version in self._wanted().items():
            served = current[alias]
            if (served.version if served else None) == version:
                continue
            if version is None:
                if alias == CHALLENGER:  # the challenger alias is gone (e.g. it was promoted)
                    chosen[alias] = None
                continue  # a champion alias never disappears on purpose: keep serving
            try:
                model, model_schema = self._loader(self.config, alias, version)
            except Exception as exc:
                log.error(
                    "v%s of %s (%s) failed to load or warm up, not swapped in: %s",
                    version,
                    self.config.model_name,
                    alias,
                    exc,
                )
                if self._on_failure:
                    self._on_failure(alias, version)
                alert_swap_failed(self.config, alias, version, str(exc)[:300])
                continue
            chosen[alias] = model
            if alias == CHAMPION:
                schema = model_schema
        if chosen == current:
            return False
        new = Arms(chosen[CHAMPION], chosen[CHALLENGER], schema)
        self.slot.swap(new)
        log.info(
            "serving %s: champion v%s, challenger %s",
            self.config.model_name,
            new.champion.version if new.champion else "none",
            f"v{new.challenger.version}" if new.challenger else "none",
        )
        if self._on_swap:
            self._on_swap(new)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.config.serve.poll_seconds):
            try:
                self.refresh()
            except Exception:  # a registry outage must not end polling; the arms keep serving
                log.exception("checking the aliases of %s failed", self.config.model_name)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="alias-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
