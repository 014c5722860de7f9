"""File checks: what a raw batch file must be before Great Expectations looks at a single row.

A pandas reader given a truncated gzip, a binary blob named `.csv` or a `;`-separated file
either crashes or, worse, returns one odd-looking column that GE then reports in confusing
terms. These checks run first, on the raw bytes, and each failure names the file, the check
and what to do next; the gate then quarantines the batch exactly as for a failed expectation.
Plain functions on bytes: cheap (one pass of numpy over the bytes for line lengths), no I/O.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
import zlib
from typing import Protocol

import numpy as np

from tasks.core.config_validation import ValidationConfig

# Check names, as they appear in the `expectation` field of a reason file.
FILE_EXISTS = "file_exists"
FILE_SIZE = "file_size"
FILE_NOT_EMPTY = "file_not_empty"
FILE_READABLE = "file_readable"  # compressed stream intact, parquet footer present
FILE_FORMAT = "file_format"  # content matches the name (no binary in a .csv)
FILE_ENCODING = "file_encoding"
FILE_LINE_LENGTH = "file_line_length"
FILE_DELIMITER = "file_delimiter"
FILE_HEADER_UNIQUE = "file_header_unique"
FILE_HAS_ROWS = "file_has_rows"
FILE_TRUNCATED = "truncated_file"  # cut off mid-row: no final newline, or a short last row

MB = 1024 * 1024
SNIFF_BYTES = 64 * 1024  # binary content shows in the first bytes
READ_CHUNK = MB  # compressed input is decompressed this much at a time, against the size limit
OTHER_DELIMITERS = (";", "\t", "|")
MAGIC = {b"\x1f\x8b": "a gzip file", b"PK\x03\x04": "a zip file", b"PAR1": "a Parquet file"}
_NON_BLANK = re.compile(rb"\S")


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class FileCheckError(ValueError):
    """A raw file that cannot be read as a batch; `check` names the failed file check."""

    def __init__(self, check: str, key: str, problem: str, next_step: str) -> None:
        self.check, self.key, self.problem = check, key, problem
        super().__init__(f"{key}: {problem}; {next_step}")


def plain_bytes(data: bytes | None, key: str, ext: str, limits: ValidationConfig) -> bytes:
    """The file's content ready for the reader (decompressed), or FileCheckError.

    `ext` is the raw-format extension (`.csv`, `.csv.gz`, `.csv.zip`, `.parquet`)."""
    if data is None:
        raise FileCheckError(
            FILE_EXISTS, key, "the landed raw file is missing", "land the batch again"
        )
    check_size(data, key, limits, "file")
    if not data:
        raise FileCheckError(FILE_NOT_EMPTY, key, "the file is empty (0 bytes)", _resend())
    if ext == ".parquet":
        if not (data.startswith(b"PAR1") and data.endswith(b"PAR1")):
            raise FileCheckError(
                FILE_READABLE, key, "not a complete Parquet file (no PAR1 header/footer)", _resend()
            )
        return data
    if ext.endswith(".gz"):
        data = _gunzip(data, key, limits)
    elif ext.endswith(".zip"):
        data = _unzip(data, key, limits)
    check_csv(data, key, limits)
    return data


def check_size(data: bytes, key: str, limits: ValidationConfig, what: str) -> None:
    if len(data) > limits.max_file_mb * MB:
        raise FileCheckError(
            FILE_SIZE,
            key,
            f"{what} is {len(data) / MB:.1f} MB, above the limit of {limits.max_file_mb:g} MB",
            "split the batch, or raise validation.max_file_mb in the dataset YAML",
        )


def _gunzip(data: bytes, key: str, limits: ValidationConfig) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            return read_bounded(stream, len(data), key, limits)
    except (OSError, EOFError, zlib.error) as exc:
        raise FileCheckError(
            FILE_READABLE, key, f"unreadable or truncated gzip ({exc})", _resend()
        ) from None


def _unzip(data: bytes, key: str, limits: ValidationConfig) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise FileCheckError(
                    FILE_FORMAT,
                    key,
                    f"a zip batch must hold exactly one CSV file, found {len(members)}",
                    "zip one file per batch",
                )
            with archive.open(members[0]) as stream:
                return read_bounded(stream, len(data), key, limits)
    except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise FileCheckError(
            FILE_READABLE, key, f"unreadable or truncated zip ({exc})", _resend()
        ) from None


def read_bounded(stream: _Readable, compressed: int, key: str, limits: ValidationConfig) -> bytes:
    """Decompress `stream` a chunk at a time and stop as soon as the content passes
    `max_file_mb`: a few hundred KB of gzipped zeros expand to gigabytes, and decompressing them
    whole (or trusting the size a zip header declares) would exhaust memory before any check."""
    limit = int(limits.max_file_mb * MB)
    content = bytearray()
    while chunk := stream.read(READ_CHUNK):
        content += chunk
        if len(content) > limit:
            raise FileCheckError(
                FILE_SIZE,
                key,
                f"decompresses to more than {limits.max_file_mb:g} MB (reading stopped at "
                f"{len(content) / MB:.1f} MB) from {compressed / MB:.2f} MB compressed, above the "
                f"limit validation.max_file_mb={limits.max_file_mb:g}",
                "split the batch, or raise validation.max_file_mb in the dataset YAML",
            )
    return bytes(content)


def check_csv(data: bytes, key: str, limits: ValidationConfig) -> None:
    """Format, encoding, line length, delimiter, header and rows of CSV bytes."""
    head = data[:SNIFF_BYTES]
    for magic, kind in MAGIC.items():
        if head.startswith(magic):
            raise FileCheckError(
                FILE_FORMAT, key, f"named as CSV but is {kind}", "land it with its real extension"
            )
    if b"\x00" in head:
        raise FileCheckError(
            FILE_FORMAT, key, "binary content (NUL bytes) in a file named as CSV", _resend()
        )
    if not _NON_BLANK.search(data):
        raise FileCheckError(FILE_NOT_EMPTY, key, "the file holds only blank space", _resend())
    if not data.isascii():  # ASCII is the fast, common case; only then decode in full
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise FileCheckError(
                FILE_ENCODING,
                key,
                f"not UTF-8: byte {data[exc.start]:#04x} at line {line}",
                "re-export the file as UTF-8",
            ) from None
    check_line_length(data, key, limits)
    header_end = data.find(b"\n")
    header_line = data[: header_end if header_end >= 0 else len(data)]
    header = next(csv.reader([header_line.decode("utf-8").rstrip("\r")]), [])
    if len(header) == 1:
        for delimiter in OTHER_DELIMITERS:
            if delimiter in header[0]:
                raise FileCheckError(
                    FILE_DELIMITER,
                    key,
                    f"one column whose header holds {delimiter!r}: the file is delimited by "
                    f"{delimiter!r}, not ','",
                    "re-export it comma-separated",
                )
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise FileCheckError(
            FILE_HEADER_UNIQUE, key, f"header repeats column names {repeated}", _resend()
        )
    if header_end < 0 or not _NON_BLANK.search(data, header_end + 1):
        raise FileCheckError(FILE_HAS_ROWS, key, "a header and no rows", _resend())
    check_complete(data, key, len(header))


def check_complete(data: bytes, key: str, fields: int) -> None:
    """The file ends with a complete row: a CSV cut off mid-row (a transfer stopped early)
    parses without an error, its last row padded with nulls, so the cut must be caught here."""
    if not data.endswith(b"\n"):
        last_line = data.count(b"\n") + 1
        raise FileCheckError(
            FILE_TRUNCATED,
            key,
            f"truncated file: line {last_line} does not end with a newline (cut off mid-row?)",
            _resend(),
        )
    end = len(data)
    while end and data[end - 1] in b"\r\n":  # the end of the last row, without copying data
        end -= 1
    line = data[data.rfind(b"\n", 0, end) + 1 : end]
    if b'"' in line:  # may close a quoted field opened lines above: not countable on its own
        return
    found = len(next(csv.reader([line.decode("utf-8")]), []))
    if found < fields:
        last_row = data.count(b"\n", 0, end) + 1
        raise FileCheckError(
            FILE_TRUNCATED,
            key,
            f"truncated file: last row (line {last_row}) has {found} fields, the header {fields}",
            _resend(),
        )


def check_line_length(data: bytes, key: str, limits: ValidationConfig) -> None:
    """No line longer than `max_line_bytes` (a lost newline makes one huge line)."""
    if len(data) <= limits.max_line_bytes or _every_window_has_a_newline(data, limits):
        return
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    bounds = np.concatenate(([-1], ends, [len(data)]))
    lengths = np.diff(bounds) - 1
    longest = int(lengths.argmax())
    if lengths[longest] > limits.max_line_bytes:
        raise FileCheckError(
            FILE_LINE_LENGTH,
            key,
            f"line {longest + 1} is {int(lengths[longest]):,} bytes long, above "
            f"validation.max_line_bytes={limits.max_line_bytes:,}",
            "check the file's line endings, or raise validation.max_line_bytes",
        )


def _every_window_has_a_newline(data: bytes, limits: ValidationConfig) -> bool:
    """True proves that no line is longer than `max_line_bytes`: a longer line would contain
    one of these aligned windows of half that length whole. A few hundred `find`s instead of a
    pass of numpy over every byte (0.5 s on 170 MB); on False the exact check finds the line."""
    window = max(limits.max_line_bytes // 2, 1)
    return all(
        data.find(b"\n", start, start + window) >= 0
        for start in range(0, len(data) - window + 1, window)
    )


def _resend() -> str:
    return "ask the producer for a complete file and land it as a revision (ingest --source)"
