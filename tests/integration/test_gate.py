"""The GE gate on real flights batches: good months pass, broken ones are quarantined with a
reason naming the rule and the column, and nothing reaches `validated/`."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.data.data_docs import wait_idle
from tasks.data.ingest import land_batch, landed_batches
from tasks.data.raw_files import IngestError, read_raw
from tasks.data.source import extract_from_source
from tasks.data.validate import gate_batch
from tests.conftest import FLIGHTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _no_data_docs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Data Docs (a background GE worker per home) only where a test asks for them."""
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "false")


@pytest.fixture(scope="module")
def february() -> pd.DataFrame:
    data, ext, _ = extract_from_source(load_config(FLIGHTS), "2013-02")
    return read_raw(data, ext)


def land_frame(storage: Storage, config: PerennialConfig, batch: str, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    land_batch(storage, config, batch, buffer.getvalue().encode(), ".csv", "test")


def test_a_real_month_passes(home: Path, february: pd.DataFrame) -> None:
    config, storage = load_config(FLIGHTS), Storage(home)
    land_frame(storage, config, "2013-02", february)
    result = gate_batch(storage, config, "2013-02")
    assert result.passed, [o.describe() for o in result.blocking_failures()]
    assert storage.exists("validated/flights/2013-02.parquet")
    summary = storage.read_json("validated/flights/2013-02.json")
    assert summary["rows"] == len(february) and summary["suite"] == "flights"
    assert not storage.list("quarantine/flights")


def broken(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    frame = frame.copy()
    if how == "dropped column":
        return frame.drop(columns=["carrier"])
    if how == "out of range":
        frame.loc[: len(frame) // 10, "distance"] = -5000
        return frame
    if how == "unseen categories":
        frame.loc[: len(frame) // 5, "origin"] = "XYZ"
        return frame
    if how == "dates outside the batch":
        frame["time_hour"] = "2013-07-15T12:00:00Z"
        return frame
    if how == "too few rows":
        return frame.head(50)
    raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "rule", "column"),
    [
        ("dropped column", "expect_table_columns_to_match_set", None),
        ("out of range", "expect_column_values_to_be_between", "distance"),
        ("unseen categories", "expect_column_values_to_be_in_set", "origin"),
        ("dates outside the batch", "expect_column_values_to_be_between", "time_hour"),
        ("too few rows", "expect_table_row_count_to_be_between", None),
    ],
)
def test_broken_batches_are_quarantined_with_the_reason(
    home: Path, february: pd.DataFrame, how: str, rule: str, column: str | None
) -> None:
    config, storage = load_config(FLIGHTS), Storage(home)
    land_frame(storage, config, "2013-02", broken(february, how))
    raw_before = storage.read_bytes("landing/flights/2013-02.csv")

    result = gate_batch(storage, config, "2013-02")

    assert not result.passed
    reason = storage.read_json("quarantine/flights/2013-02.reason.json")
    assert any(f["expectation"] == rule and f["column"] == column for f in reason["failed"]), reason
    assert storage.read_bytes("quarantine/flights/2013-02.csv") == raw_before
    assert storage.read_bytes("landing/flights/2013-02.csv") == raw_before  # raw untouched
    assert not storage.list("validated/flights")


def test_every_real_month_of_2013_passes_with_warnings_only(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "false")
    config, storage = load_config(FLIGHTS), Storage(home)
    for month in range(1, 13):
        batch = f"2013-{month:02d}"
        land_batch(storage, config, batch, *extract_from_source(config, batch))
        result = gate_batch(storage, config, batch)
        assert result.passed, (batch, [o.describe() for o in result.blocking_failures()])
    assert not storage.list("quarantine/flights")
    assert len(storage.list("validated/flights")) == 24


def test_a_warning_only_batch_passes_and_keeps_its_warnings(
    home: Path, february: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dataset YAML may lower a rule to a warning, per type or per `type:column`.
    monkeypatch.setenv(
        "PERENNIAL_VALIDATION__SEVERITY", '{"expect_column_values_to_be_in_set:origin": "warning"}'
    )
    config, storage = load_config(FLIGHTS), Storage(home)
    land_frame(storage, config, "2013-02", broken(february, "unseen categories"))
    result = gate_batch(storage, config, "2013-02")
    assert result.passed and not result.blocking_failures()
    assert any(
        o.expectation == "expect_column_values_to_be_in_set" and o.column == "origin"
        for o in result.warnings()
    )
    summary = storage.read_json("validated/flights/2013-02.json")
    assert any(
        o["column"] == "origin" and not o["success"] and o["severity"] == "warning"
        for o in summary["outcomes"]
    )


def test_a_quarantined_batch_takes_a_corrected_revision(home: Path, february: pd.DataFrame) -> None:
    config, storage = load_config(FLIGHTS), Storage(home)
    land_frame(storage, config, "2013-02", broken(february, "out of range"))
    first_raw = storage.read_bytes("landing/flights/2013-02.csv")
    assert not gate_batch(storage, config, "2013-02").passed

    corrected = land_batch(storage, config, "2013-02", to_csv(february), ".csv", "fixed file")
    assert (corrected.status, corrected.revision) == ("revised", 2)
    assert corrected.key == "landing/flights/2013-02.r2.csv"
    result = gate_batch(storage, config, "2013-02")

    assert result.passed and result.revision == 2
    assert storage.read_bytes("landing/flights/2013-02.csv") == first_raw  # history keeps both
    assert storage.exists("landing/flights/2013-02.landed.json")
    assert storage.exists("landing/flights/2013-02.r2.landed.json")
    assert storage.read_json("quarantine/flights/2013-02.r1.reason.json")["revision"] == 1
    assert not storage.exists("quarantine/flights/2013-02.reason.json")
    assert storage.read_json("validated/flights/2013-02.json")["revision"] == 2
    assert landed_batches(storage, config) == ["2013-02"]
    # A batch that passed takes no revision: its raw data is settled.
    with pytest.raises(IngestError, match="not quarantined"):
        land_batch(storage, config, "2013-02", to_csv(february.head(2000)), ".csv", "again")


def to_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def test_data_docs_render_only_the_new_validation(
    home: Path, february: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rebuilding the whole site re-rendered every earlier page: each gate got slower.
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "true")
    config, storage = load_config(FLIGHTS), Storage(home)
    pages = lambda: sorted(storage.path("data_docs/validations").rglob("*.html"))  # noqa: E731
    land_frame(storage, config, "2013-02", february)
    assert gate_batch(storage, config, "2013-02").passed
    wait_idle(storage.path("data_docs"))  # rendered by a background worker
    (first,) = pages()
    first_rendered = first.stat().st_mtime_ns
    data, ext, _ = extract_from_source(config, "2013-03")
    land_batch(storage, config, "2013-03", data, ext, "test")
    assert gate_batch(storage, config, "2013-03").passed
    wait_idle(storage.path("data_docs"))
    assert len(pages()) == 2
    assert first.stat().st_mtime_ns == first_rendered
    index = storage.path("data_docs/index.html").read_text()
    assert all(page.name in index for page in pages())
    assert "great-expectations-web-assets" not in index
    # GE's own result of each batch, beside the pages; GE agreed with the gate
    results = storage.path("data_docs/results/flights")
    assert sorted(p.name for p in results.iterdir()) == ["2013-02.r1.json", "2013-03.r1.json"]
    assert not storage.path("data_docs/disagreements").exists()


def test_a_tightened_suite_or_a_new_gate_version_validates_again(
    home: Path, tmp_path: Path, february: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "already validated" shortcut holds only for the same bytes under the same rules."""
    import json
    import shutil

    from tasks.data import validate

    config, storage = load_config(FLIGHTS), Storage(home)
    gx_copy = tmp_path / "gx"
    shutil.copytree(config.validation.gx_root, gx_copy, ignore=shutil.ignore_patterns("unc*"))
    config = config.model_copy(
        update={"validation": config.validation.model_copy(update={"gx_root": gx_copy})}
    )
    land_frame(storage, config, "2013-02", february)
    assert gate_batch(storage, config, "2013-02").passed
    again = gate_batch(storage, config, "2013-02")
    assert again.passed and "expectations" not in again.timings  # the shortcut

    monkeypatch.setattr(validate, "GATE_VERSION", validate.GATE_VERSION + 1)
    assert "expectations" in gate_batch(storage, config, "2013-02").timings

    suite_file = gx_copy / "expectations" / "flights.json"
    suite = json.loads(suite_file.read_text())
    rows = next(e for e in suite["expectations"] if e["type"].startswith("expect_table_row_count"))
    rows["kwargs"].update(min_value=100_000, max_value=200_000)  # no real month is that large
    suite_file.write_text(json.dumps(suite, indent=2))
    tightened = gate_batch(storage, config, "2013-02")

    assert not tightened.passed
    assert "expect_table_row_count_to_be_between" in {
        o.expectation for o in tightened.blocking_failures()
    }
    assert not storage.exists("validated/flights/2013-02.parquet")
    assert storage.exists("quarantine/flights/2013-02.reason.json")
