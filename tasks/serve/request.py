"""The request a served model takes: the pydantic model of one input row, built from the config's
features and the categories the model was trained on (strict types, finite numbers, times every
scoring path holds), and the validators of a request body of one row or many."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, create_model

from tasks.core.config import PerennialConfig

# The booster reads its input as float32: a number beyond float32's range becomes infinite there,
# and explanations (a DMatrix) refuse it. A served number must be finite in float32 too.
LARGEST_SERVED_NUMBER = float(np.finfo(np.float32).max)
# Times that every path can hold: batch scoring keeps them as pandas nanosecond timestamps
# (1677-09-21 to 2262-04-11), and a day of margin keeps any time zone's local time in range.
EARLIEST_SERVED_TIME = datetime(1677, 9, 22, tzinfo=UTC)
LATEST_SERVED_TIME = datetime(2262, 4, 10, tzinfo=UTC)


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
