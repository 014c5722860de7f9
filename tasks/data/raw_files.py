"""Raw files: the formats a batch may arrive in (CSV, gzip or zip CSV, Parquet), their bytes read
into a frame with no coercion beyond the reader's own (pyarrow's multi-threaded reader when it
gives what pandas' gives), and a frame written as the CSV bytes a package source lands."""

from __future__ import annotations

import io
import os
import re

import numpy as np
import pandas as pd

RAW_FORMATS = (".csv", ".csv.gz", ".csv.zip", ".parquet")


class IngestError(ValueError):
    """A batch that cannot be read or landed (a format not accepted, a missing file, bytes that
    differ from a landed batch's); the message says which file and why. Here, below the source
    and the landing that raise it too."""


def raw_extension(name: str) -> str:
    """The raw-format extension of a file name, or IngestError naming what is accepted."""
    for ext in RAW_FORMATS:
        if name.lower().endswith(ext):
            return ext
    raise IngestError(f"{name}: unsupported file type; expected one of {', '.join(RAW_FORMATS)}")


def read_raw(data: bytes, ext: str) -> pd.DataFrame:
    """Parse raw bytes into a frame, with no type coercion beyond the reader's own."""
    if ext == ".parquet":
        return pd.read_parquet(io.BytesIO(data))
    compression = "gzip" if ext.endswith(".gz") else "zip" if ext.endswith(".zip") else None
    if compression is None and idle_cores() and (frame := read_csv_fast(data)) is not None:
        return frame
    return pd.read_csv(io.BytesIO(data), compression=compression)


def idle_cores() -> bool:
    """Whether a multi-threaded reader can expect cores to itself. Measured on 1M flights rows
    (2 cores): pyarrow 1.2 s against pandas 2.3 s at a load average of 6, but 4.3 s against
    2.0 s at a load average of 17, when its threads fight the machine's other work."""
    return os.getloadavg()[0] < (os.cpu_count() or 1)


# The columns pyarrow may hand over: for these its values are those of pandas' reader (tested
# on every 2013 month, exactly); any other (an all-null column, booleans, dates it inferred)
# and the file is read again by pandas.
ARROW_TYPES = ("int64", "double", "string")


def read_csv_fast(data: bytes) -> pd.DataFrame | None:
    """Plain CSV bytes read by pyarrow's multi-threaded reader, with pandas' null markers and
    no timestamp inference (the time column stays text, as pandas reads it; the gate parses
    it); None when pyarrow would not give what `pd.read_csv` gives, or fails."""
    import pyarrow as pa
    import pyarrow.csv as arrow_csv
    from pandas._libs.parsers import STR_NA_VALUES

    convert = arrow_csv.ConvertOptions(
        null_values=sorted(STR_NA_VALUES),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        timestamp_parsers=["\x01"],  # a format no value matches: never infer timestamps
    )
    # A quoted value may hold a newline: allowing it costs the parallel block split.
    parse = arrow_csv.ParseOptions(newlines_in_values=data.find(b'"') >= 0)
    try:
        table = arrow_csv.read_csv(pa.py_buffer(data), parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # pandas reads it, or names the error as before
    if any(str(field.type) not in ARROW_TYPES or not field.name for field in table.schema):
        return None  # ... or a nameless column, which pandas calls "Unnamed: N"
    text = pd.Series(["text"]).dtype  # what pandas' reader gives text: pandas 3 `str`
    if getattr(text, "storage", None) == "pyarrow":  # arrow-backed: hand the buffers over
        return table.to_pandas(types_mapper={pa.string(): text}.get)  # 4x faster than plain
    return table.to_pandas()


# `2013-01-01T10:00:00Z`: what most exports write. `parse_times` gives such values their
# instant in UTC; pyarrow does the same twenty times faster (no Python regex per value).
UTC_SECONDS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}Z$"


def utc_times(values: pd.Series) -> pd.Series | None:
    """Text times that are all (nulls aside) whole seconds in UTC, parsed by pyarrow; None
    for anything else (offsets, naive times, impossible dates), which `parse_times` reads."""
    import pyarrow as pa
    import pyarrow.compute as compute

    if values.dtype.type is not str:
        return None
    text = pa.Array.from_pandas(values)
    if not compute.all(compute.match_substring_regex(text, UTC_SECONDS)).as_py():
        return None  # `all` skips nulls, which stay null (NaT) below, as in `parse_times`
    try:
        stamps = compute.cast(text, pa.timestamp("s", tz="UTC"))
    except pa.ArrowInvalid:  # e.g. 2013-02-30: parse_times makes it NaT
        return None
    return stamps.to_pandas().set_axis(values.index).rename(values.name)  # positions, not labels


SPECIAL = re.compile(r'[,"\r\n]')  # what the csv module would quote


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame.to_csv(index=False)`, byte for byte (landed bytes are hashed and immutable, so
    re-extracting a landed batch must give the same ones), twice as fast for plain columns."""
    text = _plain_csv(frame)
    return (frame.to_csv(index=False) if text is None else text).encode()


def _plain_csv(frame: pd.DataFrame) -> str | None:
    """The CSV text pandas writes, for frames of numpy ints and floats and of text that needs
    no quoting; None for anything else. pandas formats a float as Python's `repr` (shortest
    round trip) and a missing value as an empty field; its csv writer costs half of its time."""
    names = [str(c) for c in frame.columns]
    # One column: the csv module quotes an empty field alone on its line; names: as cells.
    if len(names) < 2 or len(set(names)) < len(names) or any(SPECIAL.search(n) for n in names):
        return None
    columns: list[list[str]] = []
    for _, values in frame.items():
        kind = values.dtype.kind if isinstance(values.dtype, np.dtype) else None
        if values.dtype == np.float64:  # float32 prints its own shorter digits
            columns.append(["" if v != v else repr(v) for v in values.to_numpy().tolist()])
        elif kind in ("i", "u"):
            columns.append(list(map(str, values.to_numpy().tolist())))
        elif pd.api.types.is_string_dtype(values.dtype):
            cells = values.to_numpy(dtype=object, na_value="").tolist()
            if not all(type(v) is str for v in cells) or SPECIAL.search("".join(cells)):
                return None
            columns.append(cells)
        else:
            return None
    end = os.linesep  # pandas' default line terminator
    return (
        ",".join(names) + end + "".join(",".join(row) + end for row in zip(*columns, strict=True))
    )
