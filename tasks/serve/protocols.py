"""The scoring protocols `perennial serve` speaks, each as a reader of its request and a writer
of its answers and errors. The app (`flows/serve.py`) runs every protocol through one path: the
token, the body limit, the champion's request schema, A/B routing, scoring, live sampling and
the metrics are the same for all; only the shapes on the wire differ.

    /predict        Perennial's own: one row (JSON object) or many (JSON list)
    /invocations    MLflow's scoring protocol (`tasks/serve/mlflow_scoring.py`)
    /v2/...         the Open Inference Protocol, alias KServe v2 (`tasks/serve/open_inference.py`)

A protocol turns its payload into the rows of `/predict` (a JSON list of objects) and lets the
champion's schema validate them, so a row means the same, and scores the same, whatever the
protocol; every answer is built by `ServedModel.answers` (MLflow's, as the registered MLflow
model's `predict` answers, by `tasks.learn.scorer.pyfunc_answer`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from tasks.serve.native_scoring import ServedModel
from tasks.serve.request import RequestSchema

JSON = "application/json"
VERSION_HEADER, ALIAS_HEADER = "X-Perennial-Version", "X-Perennial-Alias"
SHOWN_PROBLEMS = 5  # a refusal names this many problems, then counts the rest


@dataclass(frozen=True)
class Reply:
    """An answer as bytes on the wire."""

    status: int
    body: bytes
    media_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """A request its protocol cannot read: the status and the reason, for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class Scored:
    """Rows scored by one arm: its scores, and its answers (`ServedModel.answers`, a dict a
    row)."""

    model_name: str
    model: ServedModel
    rows: list[BaseModel]
    scores: np.ndarray
    answers: list[dict[str, Any]]
    threshold: float


class ScoringProtocol(Protocol):
    """What the app asks of a protocol."""

    name: str  # the `protocol` label of the request metrics

    def read(
        self,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        schema: RequestSchema,
        champion: ServedModel,
    ) -> tuple[list[BaseModel], Any]:
        """The validated rows of a request (`schema`: the champion's), and what the answer
        needs of the request (its context). Raises `Refused`, or pydantic's ValidationError for
        rows the schema refuses."""
        ...

    def answer(self, scored: Scored, context: Any) -> Reply: ...

    def refusal(self, status: int, message: str) -> Reply:
        """An error in the protocol's own shape."""
        ...

    def invalid(self, error: ValidationError) -> Reply:
        """Rows the schema refused, each problem named by row and column."""
        ...


def served_by(model: ServedModel) -> dict[str, str]:
    """Headers that name the version and the arm that answered."""
    return {VERSION_HEADER: model.version, ALIAS_HEADER: model.alias}


# --- payloads: from a protocol's shape to the rows of /predict ------------------------------


def load_json(body: bytes) -> tuple[Any, bool]:
    """A JSON payload, and whether it held a non-finite number. pandas and numpy clients write
    a missing number as `NaN` (not JSON, but what `json.dumps` writes): it is read as null, a
    missing value. `Infinity` and numbers beyond float range are kept, for the schema to refuse
    by name."""
    try:
        return orjson.loads(body), False
    except orjson.JSONDecodeError:
        pass
    non_finite = False

    def constant(text: str) -> float | None:
        nonlocal non_finite
        if text == "NaN":
            return None
        non_finite = True
        return float(text)

    def number(text: str) -> float:
        nonlocal non_finite
        value = float(text)
        if value in (float("inf"), float("-inf")):
            non_finite = True
        return value

    try:
        return json.loads(body, parse_constant=constant, parse_float=number), non_finite
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None


def rows_json(rows: list[dict[str, Any]], non_finite: bool = False) -> bytes:
    """Rows as the JSON list `/predict` takes. orjson writes an infinite float as null (which
    would read as missing): rows holding one are written by `json`, whose `Infinity` the schema
    refuses naming the field."""
    if non_finite:
        return json.dumps(rows).encode()
    return orjson.dumps(rows)


def validate_rows(schema: RequestSchema, rows: list[dict[str, Any]], non_finite: bool) -> Any:
    """Rows checked by the champion's schema exactly as `/predict` checks a JSON list."""
    return list(schema.many.validate_json(rows_json(rows, non_finite)))


def validation_message(error: ValidationError, row_word: str = "row") -> str:
    """The schema's refusals in one line: each problem with its column and the rows it is in
    (`row_word` names a row in the protocol's terms)."""
    problems: dict[tuple[str, str], list[int]] = {}
    for item in error.errors(include_url=False, include_input=False):
        loc = list(item["loc"])
        row = loc.pop(0) if loc and isinstance(loc[0], int) else None
        where = ".".join(str(part) for part in loc) or "(rows)"
        rows = problems.setdefault((where, item["msg"]), [])
        if isinstance(row, int):
            rows.append(row)
    parts = []
    for (where, message), rows in list(problems.items())[:SHOWN_PROBLEMS]:
        at = ""
        if rows:
            more_rows = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
            at = f" ({row_word} {rows[0]}{more_rows})"
        parts.append(f"{where}: {message}{at}")
    more = len(problems) - SHOWN_PROBLEMS
    return "; ".join(parts) + (f"; and {more} more problems" if more > 0 else "")


def too_many_rows(error: ValidationError) -> bool:
    """A refusal of the list as a whole for its length (`serve.max_rows`)."""
    return any(item["type"] == "too_long" and not item["loc"] for item in error.errors())


# --- /predict ------------------------------------------------------------------------------


class PredictProtocol:
    """Perennial's own `/predict`: one row or a list; each prediction names its version and arm;
    `?explain=true` adds each row's top three reasons."""

    name = "predict"

    def read(
        self,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        schema: RequestSchema,
        champion: ServedModel,
    ) -> tuple[list[BaseModel], bool]:
        explain = query.get("explain", "").lower() in ("true", "1")
        return schema.parse(body), explain

    def answer(self, scored: Scored, context: Any) -> Reply:
        model = scored.model
        predictions = [
            {**answer, "version": model.version, "alias": model.alias} for answer in scored.answers
        ]
        if context:
            for prediction, reasons in zip(predictions, model.reasons(scored.rows), strict=True):
                prediction["reasons"] = reasons
        body = {
            "model": scored.model_name,
            "version": model.version,
            "alias": model.alias,
            "threshold": scored.threshold,
            "predictions": predictions,
        }
        return Reply(200, orjson.dumps(body), headers=served_by(model))

    def refusal(self, status: int, message: str) -> Reply:
        return Reply(status, orjson.dumps({"detail": message}))

    def invalid(self, error: ValidationError) -> Reply:
        """422 naming each field (and row index, for a list) as FastAPI does: loc starts at
        body."""
        detail = [
            {
                "loc": ["body", *item["loc"]],
                "field": ".".join(str(part) for part in item["loc"]) or "(body)",
                "msg": item["msg"],
                "type": item["type"],
            }
            for item in error.errors(include_url=False, include_input=False)
        ]
        return Reply(422, orjson.dumps({"detail": detail}))


PREDICT = PredictProtocol()
