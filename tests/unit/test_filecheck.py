"""File checks on raw bytes: each broken file fails one named check, naming the file."""

from __future__ import annotations

import gzip
import io
import tracemalloc
import zipfile

import pytest

from tasks.core.config_validation import ValidationConfig
from tasks.data.filecheck import FileCheckError, plain_bytes

LIMITS = ValidationConfig(suite="s", max_file_mb=1.0, max_line_bytes=1000)
GOOD = b"a,b,c\n1,2,x\n3,4,y\n"
KEY = "landing/d/2013-01.csv"
MB = 1024 * 1024


def zipped(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("batch.csv", data)
    return buffer.getvalue()


def test_good_files_pass_and_come_back_decompressed() -> None:
    assert plain_bytes(GOOD, KEY, ".csv", LIMITS) == GOOD
    assert plain_bytes(gzip.compress(GOOD), KEY, ".csv.gz", LIMITS) == GOOD
    assert plain_bytes(zipped(GOOD), KEY, ".csv.zip", LIMITS) == GOOD
    assert plain_bytes("a,b\n1,é\n".encode(), KEY, ".csv", LIMITS)  # UTF-8 beyond ASCII


@pytest.mark.parametrize(
    ("data", "ext", "check", "words"),
    [
        (None, ".csv", "file_exists", "missing"),
        (b"", ".csv", "file_not_empty", "empty"),
        (b"\n \n", ".csv", "file_not_empty", "blank"),
        (b"a,b,c\n", ".csv", "file_has_rows", "no rows"),
        (gzip.compress(GOOD * 50)[:40], ".csv.gz", "file_readable", "truncated gzip"),
        (zipped(GOOD * 50)[:60], ".csv.zip", "file_readable", "zip"),
        (b"PAR1\x00\x01", ".parquet", "file_readable", "Parquet"),
        (gzip.compress(GOOD), ".csv", "file_format", "gzip file"),
        (b"abc\x00\x01\x02\xff" * 10, ".csv", "file_format", "binary"),
        ("a,b\n1,é\n".encode("latin-1"), ".csv", "file_encoding", "not UTF-8"),
        (b"a;b;c\n1;2;3\n", ".csv", "file_delimiter", "';'"),
        (b"a\tb\tc\n1\t2\t3\n", ".csv", "file_delimiter", "'\\t'"),
        (b"a,b,a\n1,2,3\n", ".csv", "file_header_unique", "['a']"),
        (b"a,b\n" + b"1," * 2000 + b"\n", ".csv", "file_line_length", "line 2"),
        (b"a,b\n" + b"1,2\n" * 300_000, ".csv", "file_size", "above the limit"),
        (GOOD[:-3], ".csv", "truncated_file", "line 3 does not end with a newline"),
        (b"a,b,c\n1,2,x\n3,4\n", ".csv", "truncated_file", "(line 3) has 2 fields"),
        (gzip.compress(GOOD[:-1]), ".csv.gz", "truncated_file", "line 3"),
    ],
)
def test_broken_files_fail_a_named_check(
    data: bytes | None, ext: str, check: str, words: str
) -> None:
    with pytest.raises(FileCheckError) as caught:
        plain_bytes(data, KEY, ext, LIMITS)
    assert caught.value.check == check
    assert str(caught.value).startswith(KEY) and words in str(caught.value)


def zeros_gzip(megabytes: int) -> bytes:
    """A gzip bomb: `megabytes` MB of zeros as repeated gzip members (valid gzip), built fast."""
    return gzip.compress(bytes(MB)) * megabytes


@pytest.mark.parametrize("ext", [".csv.gz", ".csv.zip"])
def test_a_decompression_bomb_stops_at_the_limit_with_bounded_memory(ext: str) -> None:
    """200 MB of zeros against a 1 MB limit: refused as too large after reading about the limit
    (memory traced by tracemalloc stays near it, far below the 200 MB the whole would take)."""
    if ext == ".csv.gz":
        bomb = zeros_gzip(200)
    else:
        buffer = io.BytesIO()
        with (
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive,
            archive.open("batch.csv", "w") as member,
        ):
            for _ in range(200):
                member.write(bytes(MB))
        bomb = buffer.getvalue()
    assert len(bomb) < MB
    tracemalloc.start()
    try:
        with pytest.raises(FileCheckError) as caught:
            plain_bytes(bomb, KEY, ext, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert caught.value.check == "file_size"
    message = str(caught.value)
    assert "decompresses to more than 1 MB" in message, message
    assert "MB compressed" in message and "validation.max_file_mb=1" in message, message
    assert peak < 20 * MB, peak


@pytest.mark.parametrize("where", [1, 50, 199])
def test_a_long_line_is_found_wherever_it_is_in_a_long_file(where: int) -> None:
    # Lines at the limit pass; one byte more anywhere fails, with the line named.
    rows = [b"1," * 499 + b"1"] * 200  # 999 bytes each, under max_line_bytes=1000
    assert plain_bytes(b"\n".join([b"a", *rows]) + b"\n", KEY, ".csv", LIMITS)
    rows[where] = b"1," * 500 + b"1"  # 1001 bytes
    with pytest.raises(FileCheckError, match=f"line {where + 2} is 1,001 bytes long"):
        plain_bytes(b"\n".join([b"a", *rows]) + b"\n", KEY, ".csv", LIMITS)
