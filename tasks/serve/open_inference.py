"""The Open Inference Protocol (KServe v2; also spoken by Seldon MLServer and NVIDIA Triton) for
a tabular model: one input tensor per column, `[rows]` or `[rows, 1]`, and one output tensor per
field of the model's answer (`ServedModel.answers`, by column: `tasks.serve.outputs`). What its
reference client, `tritonclient[http]`, sends and expects, beyond the specification's JSON:

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

import functools
import math
import struct
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson
from pydantic import BaseModel, ValidationError

from tasks.serve.outputs import answer_columns, answer_fields
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
# Below this many values `struct` and Python read and check a number tensor faster than numpy
# (a single-row request carries one value per tensor, and a tensor per column).
FEW_VALUES = 64


# --- reading a request ---------------------------------------------------------------------


def decode_bytes_tensor(raw: memoryview, name: str) -> list[str]:
    """A binary BYTES tensor: each element a 4-byte little-endian length, then UTF-8 text."""
    if len(raw) >= 4 and int.from_bytes(raw[:4], "little") == len(raw) - 4:  # one element
        try:
            return [str(raw[4:], "utf-8")]
        except UnicodeDecodeError:
            raise Refused(400, f"input {name}: a BYTES element is not UTF-8 text") from None
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


def _finite_or_missing(values: list[Any]) -> tuple[list[Any], bool]:
    """Numbers with NaN as None (missing), and whether one is infinite."""
    values = [None if value != value else value for value in values]
    return values, any(value is not None and math.isinf(value) for value in values)


def _bad_shape(name: str, shape: Any) -> Refused:
    return Refused(
        400,
        f"input {name} has shape {shape}: send one tensor per column, of shape [rows] or [rows, 1]",
    )


class Tensor(NamedTuple):  # a tuple: made for every input of every request
    """An input tensor as its JSON header describes it: JSON `data`, or `size` binary bytes."""

    name: str
    datatype: str
    rows: int
    size: int | None  # bytes in the binary part; None: the values are `data`
    data: list[Any] | None = None


_struct = functools.lru_cache(maxsize=256)(struct.Struct)  # the same layouts come back

# How a tensor's values are read from the unpacked binary part (`Layout.parts`).
JSON_DATA, TEXT, FEW, MANY = "json", "text", "few", "many"


@dataclass(frozen=True)
class Layout:
    """What a request's JSON header says: its tensors in order, the request id, the outputs
    asked for (name, binary or not), and whether a JSON value is infinite. `packed` unpacks the
    whole binary part in one call (its offsets are all in the header); `parts` says where each
    tensor's values are in what it returns, and how to read them."""

    tensors: tuple[Tensor, ...]
    request_id: Any
    outputs: tuple[tuple[str, bool], ...]
    non_finite: bool
    packed: struct.Struct
    parts: tuple[tuple[Tensor, int, str], ...]
    floats: tuple[int, ...]  # where the few-value float tensors' numbers are, once unpacked

    @property
    def binary_only(self) -> bool:
        return all(tensor.size is not None for tensor in self.tensors)


def _packing(
    tensors: tuple[Tensor, ...],
) -> tuple[struct.Struct, tuple[tuple[Tensor, int, str], ...], tuple[int, ...]]:
    """One struct for the binary part: a few numbers as numbers, text and long number tensors
    as raw bytes (decoded after, numpy for the long ones); and where the few floats are."""
    codes, parts, index = ["<"], [], 0
    floats: list[int] = []
    for tensor in tensors:
        if tensor.size is None:
            parts.append((tensor, -1, JSON_DATA))
        elif tensor.datatype != "BYTES" and tensor.rows < FEW_VALUES:
            codes.append(f"{tensor.rows}{STRUCT_CODES[tensor.datatype]}")
            parts.append((tensor, index, FEW))
            if tensor.datatype.startswith("FP"):
                floats.extend(range(index, index + tensor.rows))
            index += tensor.rows
        else:
            codes.append(f"{tensor.size}s")
            parts.append((tensor, index, TEXT if tensor.datatype == "BYTES" else MANY))
            index += 1
    return _struct("".join(codes)), tuple(parts), tuple(floats)


def _tensor(tensor: Any) -> Tensor:
    """One input tensor's header, checked: a name, a shape of one column, binary or JSON data.
    Lean on purpose: a single-row request carries a tensor per column."""
    try:
        name, datatype, shape = tensor["name"], tensor["datatype"], tensor["shape"]
    except (TypeError, KeyError):
        raise Refused(
            400, "each input must be an object with name, datatype, shape and data"
        ) from None
    if type(shape) is not list or not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise _bad_shape(name, shape)
    rows = shape[0]
    if type(rows) is not int or rows < 0:
        raise _bad_shape(name, shape)
    parameters = tensor.get("parameters")
    size = parameters.get("binary_data_size") if parameters else None
    if size is None:
        data = tensor.get("data", _ABSENT)
        if data is _ABSENT:
            raise Refused(400, f"input {name} has neither data nor parameters.binary_data_size")
        data = _flat(data)
        if len(data) != rows:
            raise Refused(400, f"input {name} has {len(data)} values for shape {shape}")
        return Tensor(name, datatype, rows, None, data)
    if type(size) is not int or size < 0:
        raise Refused(400, f"input {name}: binary_data_size {size!r} is not a size")
    dtype = DTYPES.get(datatype)
    if dtype is None and datatype != "BYTES":
        raise Refused(400, f"input {name}: datatype {datatype!r} is not one this server reads")
    if dtype is not None and size != rows * dtype.itemsize:
        raise Refused(400, f"input {name}: {size} bytes of {datatype} for shape {shape}")
    return Tensor(name, datatype, rows, size)


_ABSENT = object()


def read_layout(header: bytes, outputs: tuple[str, ...]) -> Layout:
    """A request's JSON header, checked (`outputs`: the names the model answers)."""
    request, non_finite = load_json(header)
    if not isinstance(request, dict) or not isinstance(request.get("inputs"), list):
        raise Refused(400, 'the request must be a JSON object with "inputs" (a list of tensors)')
    tensors = tuple(_tensor(tensor) for tensor in request["inputs"])
    names = [tensor.name for tensor in tensors]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise Refused(400, f"inputs given twice: {', '.join(twice)}")
    if len({tensor.rows for tensor in tensors}) > 1:
        shown = ", ".join(f"{tensor.name} {tensor.rows}" for tensor in tensors)
        raise Refused(400, f"inputs of different lengths ({shown}): send one value per row")
    packed, parts, floats = _packing(tensors)
    asked = requested_outputs(request, outputs)
    return Layout(tensors, request.get("id"), asked, non_finite, packed, parts, floats)


class Layouts:
    """Headers of binary requests, read once: a client sending rows of one shape sends the same
    JSON header every time (only the bytes after it change), and a single-row request is a
    tensor per column, so reading the header is most of the work. Headers with JSON data (which
    changes with every request) are never kept."""

    def __init__(self, most: int = 256) -> None:
        self.most = most
        self._known: dict[tuple[bytes, tuple[str, ...]], Layout] = {}

    def read(self, header: bytes, outputs: tuple[str, ...]) -> Layout:
        key = (header, outputs)
        layout = self._known.get(key)
        if layout is None:
            layout = read_layout(header, outputs)
            if layout.binary_only:
                if len(self._known) >= self.most:
                    self._known.clear()  # a client sending ever-new headers: bounded
                self._known[key] = layout
        return layout


def read_infer(
    body: bytes,
    headers: Mapping[str, str],
    schema: RequestSchema,
    outputs: tuple[str, ...],
    layouts: Layouts | None = None,
) -> tuple[list[BaseModel], dict[str, Any]]:
    """The validated rows of an inference request, and what its answer needs: the request id
    and the outputs asked for (name, binary or not); `outputs`: the names the model answers."""
    header_length = headers.get(HEADER_LENGTH)
    if header_length is None:
        header, binary = body, memoryview(b"")
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise Refused(400, f"{HEADER_LENGTH} {header_length!r} is not within the body")
        header, binary = body[: int(header_length)], memoryview(body)[int(header_length) :]
    layout = layouts.read(header, outputs) if layouts else read_layout(header, outputs)
    if layout.packed.size > len(binary):
        raise Refused(400, "the binary data is shorter than the inputs' binary_data_size")
    unpacked = layout.packed.unpack_from(binary)
    non_finite = layout.non_finite
    # One check of every few-value float; only a request holding NaN or infinity pays more.
    finite = all(map(math.isfinite, [unpacked[i] for i in layout.floats]))
    columns: list[list[Any]] = []
    for tensor, start, how in layout.parts:
        if how == FEW:
            values = list(unpacked[start : start + tensor.rows])
            if not finite and tensor.datatype.startswith("FP"):
                values, infinite = _finite_or_missing(values)
                non_finite = non_finite or infinite
        elif how == JSON_DATA:
            values = tensor.data or []
        elif how == TEXT:
            values = decode_bytes_tensor(memoryview(unpacked[start]), tensor.name)
            if len(values) != tensor.rows:
                raise Refused(
                    400, f"input {tensor.name} has {len(values)} values for {tensor.rows} rows"
                )
        else:
            array = np.frombuffer(unpacked[start], dtype=DTYPES[tensor.datatype])
            values = array.tolist()
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                values, infinite = _finite_or_missing(values)
                non_finite = non_finite or infinite
        columns.append(values)
    names = [tensor.name for tensor in layout.tensors]
    # Every column has the rows of its shape (checked as read), and every shape the same rows.
    table = [dict(zip(names, row)) for row in zip(*columns)]  # noqa: B905
    rows = validate_rows(schema, table, non_finite)
    return rows, {"id": layout.request_id, "outputs": layout.outputs}


def requested_outputs(
    request: dict[str, Any], outputs: tuple[str, ...]
) -> tuple[tuple[str, bool], ...]:
    """The outputs to answer, in order, each binary or JSON: those named, or all."""
    binary_default = bool((request.get("parameters") or {}).get("binary_data_output", False))
    asked = request.get("outputs")
    if asked is None:
        return tuple((name, binary_default) for name in outputs)
    if not isinstance(asked, list):
        raise Refused(400, '"outputs" must be a list of {"name": ...} objects')
    chosen = []
    for output in asked:
        name = output.get("name") if isinstance(output, dict) else None
        if name not in outputs:
            raise Refused(400, f"unknown output {name!r}: this model answers {list(outputs)}")
        binary = (output.get("parameters") or {}).get("binary_data", binary_default)
        chosen.append((name, bool(binary)))
    return tuple(chosen)


# --- writing an answer ---------------------------------------------------------------------


DATATYPES = {dtype.newbyteorder("="): name for name, dtype in DTYPES.items()}


def datatype_of(values: np.ndarray) -> str:
    """The tensor type of an output column."""
    known = DATATYPES.get(values.dtype)
    if known is not None:
        return known
    if values.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    raise ValueError(f"no tensor type for {values.dtype}")


def encode_bytes_tensor(values: np.ndarray) -> bytes:
    parts = []
    for value in values.ravel().tolist():
        data = value if isinstance(value, bytes) else str(value).encode()
        parts += [struct.pack("<I", len(data)), data]
    return b"".join(parts)


def infer_response(scored: Scored, context: dict[str, Any]) -> Reply:
    """The answer: one output tensor per column asked for, the binary ones after the JSON."""
    tensors, raw = [], []
    columns = answer_columns(scored.answers)
    for name, binary in context["outputs"]:
        values = columns[name]
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
    fields = answer_fields(arms[0])
    return {
        "name": model_name,
        "versions": [model.version for model in arms],
        "platform": PLATFORM,
        "inputs": input_tensors(schema),
        "outputs": [
            {"name": name, "datatype": datatype_of(values), "shape": [-1, *values.shape[1:]]}
            for name, values in fields.items()
        ],
    }


class OpenInferenceProtocol:
    """`POST /v2/models/{name}[/versions/{version}]/infer`."""

    name = "v2"

    def __init__(self) -> None:
        self.layouts = Layouts()
        self._answers: tuple[ServedModel | None, tuple[str, ...]] = (None, ())

    def answered(self, champion: ServedModel) -> tuple[str, ...]:
        """The names of the champion's outputs (read again only when the champion changes)."""
        model, names = self._answers
        if model is not champion:
            names = tuple(answer_fields(champion))
            self._answers = (champion, names)
        return names

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
        return read_infer(body, headers, schema, self.answered(champion), self.layouts)

    def answer(self, scored: Scored, context: Any) -> Reply:
        return infer_response(scored, context)

    def refusal(self, status: int, message: str) -> Reply:
        return Reply(status, orjson.dumps({"error": message}))

    def invalid(self, error: ValidationError) -> Reply:
        return self.refusal(
            400, f"inputs refused by the model's schema: {validation_message(error, 'element')}"
        )


OPEN_INFERENCE = OpenInferenceProtocol()
