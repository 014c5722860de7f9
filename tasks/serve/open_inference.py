"""The Open Inference Protocol (KServe v2; also spoken by Seldon MLServer and NVIDIA Triton) for
a tabular model: one input tensor per column, `[rows]` or `[rows, 1]`, and one output tensor per
answer column (`tasks.serve.outputs`). What its reference client, `tritonclient[http]`, sends and
expects, beyond the specification's JSON:

- the binary tensor extension, its default: each tensor's raw bytes follow the JSON header,
  whose length is in `Inference-Header-Content-Length`; a tensor's `parameters.binary_data_size`
  says how many bytes are its own; strings (`BYTES`) are each a 4-byte little-endian length and
  the UTF-8 bytes. Outputs come back binary when the request asks (`binary_data_output`, or an
  output's `binary_data`), as tritonclient does when it names no outputs.
- no Content-Type header: the body is read as it comes, never by a form or model parser.
- errors as `{"error": "..."}`, the only shape the client reads.

A NaN in a number tensor is a missing value (a tensor has no null); `Infinity` is refused.
"""

from __future__ import annotations

import math
import struct
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from tasks.serve.outputs import Outputs, output_columns
from tasks.serve.protocols import (
    Refused,
    Reply,
    Scored,
    columns_to_rows,
    load_json,
    served_by,
    validate_rows,
    validation_message,
)
from tasks.serve.request import RequestSchema

if TYPE_CHECKING:
    from tasks.serve.native_scoring import ServedModel

HEADER_LENGTH = "inference-header-content-length"
BINARY = "application/octet-stream"
PLATFORM = "perennial_xgboost"
# The specification's tensor types: their little-endian struct codes and numpy dtypes.
STRUCT_CODES = {
    "BOOL": "?",
    "UINT8": "B",
    "UINT16": "H",
    "UINT32": "I",
    "UINT64": "Q",
    "INT8": "b",
    "INT16": "h",
    "INT32": "i",
    "INT64": "q",
    "FP16": "e",
    "FP32": "f",
    "FP64": "d",
}
DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(f"<{code}") for name, code in STRUCT_CODES.items()
}
# Below this many values `struct` and Python read and check a tensor faster than numpy (a
# single-row request carries one value per tensor, and a tensor per column).
FEW_VALUES = 64
NAMES_OF_KINDS = {"b": "BOOL", "f": "FP", "i": "INT", "u": "UINT"}


# --- reading a request ---------------------------------------------------------------------


def decode_bytes_tensor(raw: memoryview, name: str) -> list[str]:
    """A binary BYTES tensor: each element a 4-byte little-endian length, then UTF-8 text."""
    values, offset = [], 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise Refused(400, f"input {name}: BYTES data ends inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise Refused(400, f"input {name}: BYTES element longer than the data left")
        try:
            values.append(str(raw[offset : offset + length], "utf-8"))
        except UnicodeDecodeError:
            raise Refused(400, f"input {name}: a BYTES element is not UTF-8 text") from None
        offset += length
    return values


def _flat(data: Any) -> list[Any]:
    """JSON tensor data, nested or flat, in row-major order."""
    if type(data) is not list:
        return [data]
    for item in data:
        if type(item) is list:
            out: list[Any] = []
            for part in data:
                out.extend(_flat(part))
            return out
    return data


def _numbers(raw: memoryview, datatype: str, count: int) -> tuple[list[Any], bool]:
    """A binary number tensor as Python values: NaN becomes None (missing); whether one is
    infinite."""
    if count < FEW_VALUES:
        listed = list(struct.unpack(f"<{count}{STRUCT_CODES[datatype]}", raw))
        if not datatype.startswith("FP") or all(map(math.isfinite, listed)):
            return listed, False
    else:
        values = np.frombuffer(raw, dtype=DTYPES[datatype])
        listed = values.tolist()
        if values.dtype.kind != "f" or np.isfinite(values).all():
            return listed, False
    listed = [None if value != value else value for value in listed]
    return listed, any(value is not None and math.isinf(value) for value in listed)


def _bad_shape(name: str, shape: Any) -> Refused:
    return Refused(
        400,
        f"input {name} has shape {shape}: send one tensor per column, of shape [rows] or [rows, 1]",
    )


def _tensor_values(tensor: Any, binary: memoryview, offset: int) -> tuple[list[Any], int, bool]:
    """One input tensor's values, the binary offset after it, and whether one is infinite.
    Lean on purpose: a single-row request carries a tensor per column, and this runs for each."""
    try:
        name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
    except (TypeError, KeyError):
        raise Refused(
            400, "each input must be an object with name, datatype, shape and data"
        ) from None
    if type(shape) is not list or not 1 <= len(shape) <= 2 or shape[1:] not in ([], [1]):
        raise _bad_shape(name, shape)
    rows = shape[0]
    if type(rows) is not int or rows < 0:
        raise _bad_shape(name, shape)
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if parameters else None
    non_finite = False
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise Refused(400, f"input {name}: binary_data_size {size} is beyond the body's data")
        raw = binary[offset : offset + size]
        offset += size
        dtype = DTYPES.get(datatype)
        if dtype is not None:
            if size % dtype.itemsize:
                raise Refused(400, f"input {name}: {size} bytes is no whole number of {datatype}")
            values, non_finite = _numbers(raw, datatype, size // dtype.itemsize)
        elif datatype == "BYTES":
            values = decode_bytes_tensor(raw, name)
        else:
            raise Refused(400, f"input {name}: datatype {datatype!r} is not one this server reads")
    elif "data" in tensor:
        values = _flat(tensor["data"])
    else:
        raise Refused(400, f"input {name} has neither data nor parameters.binary_data_size")
    if len(values) != rows:
        raise Refused(400, f"input {name} has {len(values)} values for shape {shape}")
    return values, offset, non_finite


def read_infer(
    body: bytes, headers: Mapping[str, str], schema: RequestSchema, outputs: Outputs
) -> tuple[list[BaseModel], dict[str, Any]]:
    """The validated rows of an inference request, and what its answer needs: the request id
    and the outputs asked for (name, binary or not)."""
    header_length = headers.get(HEADER_LENGTH)
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise Refused(400, f"{HEADER_LENGTH} {header_length!r} is not within the body")
        header, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    request, non_finite = load_json(header)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise Refused(400, 'the request must be a JSON object with "inputs" (a list of tensors)')
    columns: dict[str, list[Any]] = {}
    offset = 0
    for tensor in request["inputs"]:
        values, offset, infinite = _tensor_values(tensor, binary, offset)
        if tensor["name"] in columns:
            raise Refused(400, f"input {tensor['name']} is given twice")
        columns[tensor["name"]] = values
        non_finite = non_finite or infinite
    rows = validate_rows(schema, columns_to_rows(columns, "inputs"), non_finite)
    return rows, {"id": request.get("id"), "outputs": requested_outputs(request, outputs)}


def requested_outputs(request: dict[str, Any], outputs: Outputs) -> list[tuple[str, bool]]:
    """The outputs to answer, in order, each binary or JSON: those named, or all."""
    binary_default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    asked = request.get("outputs")
    if asked is None:
        return [(name, binary_default) for name in outputs.columns]
    if not isinstance(asked, list):
        raise Refused(400, '"outputs" must be a list of {"name": ...} objects')
    chosen = []
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in outputs.columns:
            raise Refused(
                400, f"unknown output {name!r}: this model answers {list(outputs.columns)}"
            )
        binary = (output.get("parameters") or {}).get("binary_data", binary_default)
        chosen.append((name, bool(binary)))
    return chosen


# --- writing an answer ---------------------------------------------------------------------


def datatype_of(values: np.ndarray) -> str:
    """The tensor type of an output column."""
    if values.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    if values.dtype.kind == "b":
        return "BOOL"
    return f"{NAMES_OF_KINDS[values.dtype.kind]}{values.dtype.itemsize * 8}"


def encode_bytes_tensor(values: np.ndarray) -> bytes:
    parts = []
    for value in values.ravel().tolist():
        data = value if isinstance(value, bytes) else str(value).encode()
        parts += [struct.pack("<I", len(data)), data]
    return b"".join(parts)


def infer_response(scored: Scored, context: dict[str, Any]) -> Reply:
    """The answer: one output tensor per column asked for, the binary ones after the JSON."""
    tensors, raw = [], []
    for name, binary in context["outputs"]:
        values = scored.outputs.columns[name]
        datatype = datatype_of(values)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if binary:
            data = (
                encode_bytes_tensor(values)
                if datatype == "BYTES"
                else values.astype(DTYPES[datatype], copy=False).tobytes()
            )
            tensor["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            tensor["data"] = values.ravel().tolist()
        tensors.append(tensor)
    answer: dict[str, Any] = {
        "model_name": scored.model_name,
        "model_version": scored.model.version,
        "parameters": {"perennial_alias": scored.model.alias},
        "outputs": tensors,
    }
    if context.get("id") is not None:
        answer["id"] = context["id"]
    header = orjson.dumps(answer)
    headers = served_by(scored.model)
    if not raw:
        return Reply(200, header, headers=headers)
    headers["Inference-Header-Content-Length"] = str(len(header))
    return Reply(200, b"".join([header, *raw]), media_type=BINARY, headers=headers)


# --- metadata ------------------------------------------------------------------------------


def _base_types(annotation: Any) -> set[Any]:
    """The plain types inside a field's annotation (through Annotated and unions)."""
    arguments = typing.get_args(annotation)
    if not arguments:
        return {annotation}
    if typing.get_origin(annotation) is typing.Annotated:
        return _base_types(arguments[0])
    return set().union(*(_base_types(argument) for argument in arguments))


def input_tensors(schema: RequestSchema) -> list[dict[str, Any]]:
    """One input tensor per request field: numbers FP64; text, times (ISO 8601) and fields that
    take text or numbers BYTES. The key columns (`validation.key_columns`) are optional; they
    pair a live row with its label."""
    tensors = []
    for name, field in schema.row.model_fields.items():
        kinds = _base_types(field.annotation)
        datatype = "FP64" if float in kinds and str not in kinds else "BYTES"
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [-1]}
        if datetime in kinds:
            tensor["parameters"] = {"content": "ISO 8601 time"}
        if not field.is_required():
            tensor.setdefault("parameters", {})["optional"] = True
        tensors.append(tensor)
    return tensors


def model_metadata(
    model_name: str, schema: RequestSchema, arms: list[ServedModel]
) -> dict[str, Any]:
    """`GET /v2/models/{name}`: the versions served, and the input and output tensors."""
    outputs = output_columns(arms[0])
    return {
        "name": model_name,
        "versions": [model.version for model in arms],
        "platform": PLATFORM,
        "inputs": input_tensors(schema),
        "outputs": [
            {"name": name, "datatype": datatype_of(values), "shape": [-1, *values.shape[1:]]}
            for name, values in outputs.columns.items()
        ],
    }


class OpenInferenceProtocol:
    """`POST /v2/models/{name}[/versions/{version}]/infer`."""

    name = "v2"

    def read(
        self,
        body: bytes,
        headers: Mapping[str, str],
        query: Mapping[str, str],
        schema: RequestSchema,
        champion: ServedModel,
    ) -> tuple[list[BaseModel], dict[str, Any]]:
        if headers.get("content-encoding", "identity").lower() != "identity":
            raise Refused(415, "compressed requests are not read: send the body uncompressed")
        return read_infer(body, headers, schema, output_columns(champion))

    def answer(self, scored: Scored, context: Any) -> Reply:
        return infer_response(scored, context)

    def refusal(self, status: int, message: str) -> Reply:
        return Reply(status, orjson.dumps({"error": message}))

    def invalid(self, error: ValidationError) -> Reply:
        return self.refusal(
            400, f"inputs refused by the model's schema: {validation_message(error, 'element')}"
        )


OPEN_INFERENCE = OpenInferenceProtocol()
