"""Landed CSV bytes are hashed and immutable: the fast writer must give pandas' bytes exactly,
or hand the frame to pandas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.data.raw_files import _plain_csv, csv_bytes
from tasks.data.source import _package_batch, _package_batch_ids, _read_package_tables
from tests.conftest import FLIGHTS


@pytest.fixture(scope="module")
def flights() -> tuple[pd.DataFrame, np.ndarray]:
    config = load_config(FLIGHTS)
    frame = _read_package_tables(config.source.model_dump_json())
    ids = _package_batch_ids(config.source.model_dump_json(), config.time.model_dump_json())
    return frame, ids


@pytest.mark.parametrize("month", range(1, 13))
def test_every_2013_month_is_written_fast_and_as_pandas_writes_it(
    flights: tuple[pd.DataFrame, np.ndarray], month: int
) -> None:
    frame, ids = flights
    rows = frame[ids == f"2013-{month:02d}"]
    assert len(rows) > 20_000
    assert _plain_csv(rows) is not None  # the fast path, not the fallback
    assert csv_bytes(rows) == rows.to_csv(index=False).encode()


def test_floats_of_every_magnitude_and_missing_values() -> None:
    rng = np.random.default_rng(7)
    floats = rng.normal(size=5000) * 10.0 ** rng.integers(-30, 30, 5000)
    specials = [0.0, -0.0, 1e16, 1e15, 1e-5, 1e-4, np.inf, -np.inf, 5e-324, np.nan, 0.1 + 0.2]
    frame = pd.DataFrame(
        {
            "f": np.concatenate([floats, specials]),
            "i": np.arange(len(floats) + len(specials), dtype=np.int64) - 7,
            "s": pd.Series(["a b", " lead", "", None, "é"] * 1001 + ["x"] * 6, dtype="str"),
        }
    )
    assert _plain_csv(frame) is not None
    assert csv_bytes(frame) == frame.to_csv(index=False).encode()


@pytest.mark.parametrize(
    "frame",
    [
        pd.DataFrame({"a": ["x,y", "z"], "b": [1, 2]}),  # a delimiter in a cell: quoted
        pd.DataFrame({"a": ['say "hi"', "z"], "b": [1, 2]}),
        pd.DataFrame({"a": ["two\nlines", "z"], "b": [1, 2]}),
        pd.DataFrame({"a,b": [1, 2], "c": [3, 4]}),  # in a name
        pd.DataFrame({"a": ["", "x"]}),  # one column: an empty field alone is quoted
        pd.DataFrame({"a": np.array([0.1, 2.5], dtype=np.float32), "b": [1, 2]}),
        pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [1, 2]}),
        pd.DataFrame({"a": [True, False], "b": [1, 2]}),
        pd.DataFrame({"a": pd.to_datetime(["2013-01-01", None]), "b": [1, 2]}),
        pd.DataFrame({"a": [1, "x"], "b": [1, 2]}),  # mixed objects
    ],
)
def test_anything_else_is_left_to_pandas(frame: pd.DataFrame) -> None:
    assert _plain_csv(frame) is None
    assert csv_bytes(frame) == frame.to_csv(index=False).encode()


def test_the_parquet_copy_of_the_package_gives_the_same_bytes_for_every_month(
    flights: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    config = load_config(FLIGHTS)
    source, time = config.source.model_dump_json(), config.time.model_dump_json()
    cache = str(tmp_path / "sources")
    first = _read_package_tables(source, cache)  # reads the package, writes the copy
    (copy,) = (tmp_path / "sources").glob("*.parquet")
    _read_package_tables.cache_clear()
    _package_batch_ids.cache_clear()
    cached = _read_package_tables(source, cache)  # from the copy
    assert cached is not first
    frame, ids = flights
    assert list(cached.dtypes) == list(frame.dtypes)
    cached_ids = _package_batch_ids(source, time, cache)
    np.testing.assert_array_equal(cached_ids, ids)
    for month in range(1, 13):
        batch = f"2013-{month:02d}"
        assert csv_bytes(cached[cached_ids == batch]) == csv_bytes(frame[ids == batch])
    copy.write_bytes(b"not parquet")  # a damaged copy: the package is read again
    _read_package_tables.cache_clear()
    assert _read_package_tables(source, cache).equals(frame)


def test_the_copy_split_by_batch_gives_the_same_bytes_for_every_month(
    flights: tuple[pd.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    config = load_config(FLIGHTS)
    source, time = config.source.model_dump_json(), config.time.model_dump_json()
    cache = str(tmp_path / "sources")
    frame, ids = flights
    first = _package_batch(source, time, cache, "2013-03")  # from the table; writes the split
    assert csv_bytes(first) == csv_bytes(frame[ids == "2013-03"])
    (split,) = [p for p in (tmp_path / "sources").iterdir() if p.is_dir()]
    assert sorted(p.name for p in split.iterdir()) == [
        f"2013-{m:02d}.parquet" for m in range(1, 13)
    ]
    for month in range(1, 13):
        batch = f"2013-{month:02d}"
        rows = _package_batch(source, time, cache, batch)  # from its own file
        assert csv_bytes(rows) == csv_bytes(frame[ids == batch]), batch
    assert _package_batch(source, time, cache, "2014-01").empty  # no file: no rows
    (split / "2013-05.parquet").write_bytes(b"not parquet")  # damaged: from the table again
    rows = _package_batch(source, time, cache, "2013-05")
    assert csv_bytes(rows) == csv_bytes(frame[ids == "2013-05"])
    other_zone = config.time.model_copy(update={"timezone": "UTC"}).model_dump_json()
    _package_batch(source, other_zone, cache, "2013-05")  # other batch ids: another split
    assert len([p for p in (tmp_path / "sources").iterdir() if p.is_dir()]) == 2
