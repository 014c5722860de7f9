"""MLflow's scoring protocol, `POST /invocations`, as `mlflow models serve` answers it, so that an
MLflow client (its `ScoringServerClient`, `requests` with a pandas payload, a Databricks-style
caller) scores against Perennial unchanged.

A JSON body holds exactly one of:

    {"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}
    {"dataframe_records": [{"col": value, ...}, ...]}
    {"instances": [{"col": value, ...}, ...]}      (or columns: {"col": [values], ...})
    {"inputs": {"col": [values], ...}}              (or records, as for instances)

and optionally `params` (accepted, unused: the model takes none). The columns are the request
fields of `/predict` (the raw columns the features are built from, times as ISO 8601 text);
`NaN`, which pandas writes for a missing number, reads as missing. The answer is
`{"predictions": [...]}` with what the registered MLflow model's `predict` returns (the
probability of the positive class, the value, or a multiclass model's probability of each class
and the chosen class, an object a row), and the headers `X-Perennial-Version` and
`X-Perennial-Alias` name the version and arm that answered. Errors are MLflow's
`{"error_code": ..., "message": ...}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import pandas as pd
from pydantic import BaseModel, ValidationError

from tasks.learn.scorer import pyfunc_answer
from tasks.serve.native_scoring import ServedModel
from tasks.serve.protocols import (
    Refused,
    Reply,
    Scored,
    load_json,
    served_by,
    validate_rows,
    validation_message,
)
from tasks.serve.request import RequestSchema

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
# MLflow's error codes for the statuses Perennial answers (MLflow's own status for each).
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "BAD_REQUEST",
    415: "BAD_REQUEST",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}


def columns_to_rows(columns: Mapping[str, list[Any]], what: str) -> list[dict[str, Any]]:
    """Rows from equally long columns (`what` names them in a refusal)."""
    names, values = list(columns), list(columns.values())
    rows = len(values[0]) if values else 0
    if any(len(column) != rows for column in values):
        shown = ", ".join(f"{name} {len(column)}" for name, column in columns.items())
        raise Refused(400, f"{what} of different lengths ({shown}): send one value per row")
    return [dict(zip(names, row)) for row in zip(*values)]  # noqa: B905 (lengths checked)


def _split(payload: Any) -> list[dict[str, Any]]:
    """pandas' `orient="split"`: columns and rows of values (the index is ignored)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("columns"), list):
        raise Refused(400, 'dataframe_split needs "columns" (a list) and "data" (a list of rows)')
    columns, data = payload["columns"], payload.get("data", [])
    if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
        raise Refused(400, 'dataframe_split "data" must be a list of rows, each a list of values')
    width = len(columns)
    for i, values in enumerate(data):
        if len(values) != width:
            raise Refused(
                400, f"dataframe_split row {i} has {len(values)} values for {width} columns"
            )
    names = [str(column) for column in columns]
    return [dict(zip(names, values, strict=True)) for values in data]


def _records_or_columns(payload: Any, key: str) -> list[dict[str, Any]]:
    """Rows from a list of objects, an object of equally long lists, or one object of values."""
    if isinstance(payload, list):
        if not all(isinstance(row, dict) for row in payload):
            raise Refused(400, f"{key} as a list must hold one object per row")
        return payload
    if isinstance(payload, dict):
        if all(isinstance(values, list) for values in payload.values()):
            return columns_to_rows(payload, f"{key} columns")
        if not any(isinstance(values, list) for values in payload.values()):
            return [payload]  # one row given as an object of values
    raise Refused(
        400, f"{key} must be a list of row objects or an object of equally long column lists"
    )


def read_rows(body: bytes, schema: RequestSchema) -> list[BaseModel]:
    """The validated rows of an `/invocations` JSON body."""
    payload, non_finite = load_json(body)
    found = [key for key in FORMATS if key in payload] if isinstance(payload, dict) else []
    if len(found) != 1:
        given = list(payload) if isinstance(payload, dict) else type(payload).__name__
        raise Refused(
            400,
            f"the input must be a JSON object with exactly one of the fields {list(FORMATS)}; "
            f"received {given}",
        )
    key = found[0]
    if key == "dataframe_split":
        rows = _split(payload[key])
    elif key == "dataframe_records":
        if not isinstance(payload[key], list) or not all(isinstance(r, dict) for r in payload[key]):
            raise Refused(400, "dataframe_records must be a list of row objects")
        rows = payload[key]
    else:
        rows = _records_or_columns(payload[key], key)
    return validate_rows(schema, rows, non_finite)


class MlflowProtocol:
    """`POST /invocations`, as `mlflow models serve` answers it."""

    name = "invocations"

    def read(
        self,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        schema: RequestSchema,
        champion: ServedModel,
    ) -> tuple[list[BaseModel], None]:
        content_type = headers.get("content-type", "application/json")
        media, _, parameters = content_type.partition(";")
        if media.strip().lower() != "application/json":
            raise Refused(
                415,
                f"this server scores JSON bodies only (Content-Type: application/json), "
                f"got {content_type!r}: send the frame as dataframe_split or dataframe_records",
            )
        charset = parameters.strip().lower().removeprefix("charset=")
        if parameters.strip() and charset not in ("utf-8", "utf8"):
            raise Refused(415, f"the body must be UTF-8, got {parameters.strip()!r}")
        return read_rows(body, schema), None

    def answer(self, scored: Scored, context: Any) -> Reply:
        model = scored.model
        answer = pyfunc_answer(scored.scores, model.task, model.classes)
        # As MLflow writes a frame (one object a row) or an array (a value a row).
        predictions = (
            answer.to_dict(orient="records")
            if isinstance(answer, pd.DataFrame)
            else answer.tolist()
        )
        return Reply(
            200, orjson.dumps({"predictions": predictions}), headers=served_by(scored.model)
        )

    def refusal(self, status: int, message: str) -> Reply:
        code = ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
        return Reply(status, orjson.dumps({"error_code": code, "message": message}))

    def invalid(self, error: ValidationError) -> Reply:
        # MLflow answers 400 to input its model's schema refuses.
        return self.refusal(
            400, f"input refused by the model's schema: {validation_message(error)}"
        )


MLFLOW = MlflowProtocol()
