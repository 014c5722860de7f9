"""A battery of bad batches through the real CLI (`perennial ingest --batch B --source FILE`).

Each one, file-level or content-level, must: exit 1, print the failed rule and the column (or the
file and the check), leave a reason file in `quarantine/`, keep the raw file byte for byte in
`landing/`, put nothing in `validated/`, and stay unusable: the reason file names that very
revision (which is what lets a corrected file land as the next one), and training and scoring
refuse the batch.
The CLI runs in-process against the session's Prefect server (one case also as a subprocess).
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core import catalog
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.data_docs import wait_idle
from tasks.data.ingest import is_quarantined, landed_record
from tasks.data.raw_files import read_raw
from tasks.data.source import extract_from_source
from tests.conftest import FLIGHTS, run_perennial

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = "2013-04"


@pytest.fixture(scope="module")
def april() -> pd.DataFrame:
    data, ext, _ = extract_from_source(load_config(FLIGHTS), BATCH)
    return read_raw(data, ext)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def truncated(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)[: len(data) // 20]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{BATCH}.csv", data)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


def cut_off(data: bytes, share: float) -> bytes:
    """The file as a transfer stopped at `share` of its length leaves it: cut mid-row."""
    return data[: int(len(data) * share)]


def cut_after_keys(data: bytes) -> bytes:
    """Cut off mid-row after the last row's key and time columns, inside the weather columns
    (pandas pads the missing fields with nulls; no key column is null)."""
    last_row = data.rfind(b"\n", 0, len(data) // 3) + 1
    cut = last_row
    for _ in range(22):  # time_hour is the 19th column, temp the 20th, humid the 22nd
        cut = data.index(b",", cut) + 1
    return data[:cut]


def with_column(frame: pd.DataFrame, column: str, values: object, share: float = 1.0) -> bytes:
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[: int(len(frame) * share) - 1, column] = values
    return csv_bytes(frame)


@dataclass
class Case:
    name: str
    make: Callable[[pd.DataFrame], bytes]
    rule: str
    column: str | None  # named in the message (None: a file check, which names the file)
    suffix: str = ".csv"
    words: tuple[str, ...] = ()  # also in the message


CASES = [
    # content-level: the Great Expectations suite
    Case(
        "dropped column",
        lambda f: csv_bytes(f.drop(columns=["carrier"])),
        "expect_table_columns_to_match_set",
        "carrier",
    ),
    Case(
        "extra column",
        lambda f: csv_bytes(f.assign(surprise=1)),
        "expect_table_columns_to_match_set",
        "surprise",
    ),
    Case(
        "renamed column",
        lambda f: csv_bytes(f.rename(columns={"dest": "destination"})),
        "expect_table_columns_to_match_set",
        "destination",
    ),
    Case(
        "wrong types",
        lambda f: with_column(f, "distance", "far"),
        "expect_column_values_to_be_in_type_list",
        "distance",
    ),
    Case(
        "all-null key",
        lambda f: with_column(f, "flight", None),
        "expect_column_values_to_not_be_null",
        "flight",
    ),
    Case(
        "duplicated keys",
        lambda f: csv_bytes(pd.concat([f, f.head(500)], ignore_index=True)),
        "expect_compound_columns_to_be_unique",
        "carrier, flight, time_hour",
    ),
    Case(
        "out-of-range values",
        lambda f: with_column(f, "distance", -5000, share=0.1),
        "expect_column_values_to_be_between",
        "distance",
    ),
    Case(
        "label source column holds text",
        lambda f: with_column(f, "arr_delay", "late"),
        "expect_column_values_to_be_in_type_list",
        "arr_delay",
    ),
    Case(
        "a fifth of distances negative",
        lambda f: with_column(f, "distance", -f["distance"], share=0.2),
        "expect_column_values_to_be_between",
        "distance",
        words=(
            "2 of 131 checks failed: expect_column_values_to_be_between on distance; "
            "reference_outliers on distance",
            "distance: 5,666 values below (-",
            ") the reference range [0, 9966] drafted from 2013-01..2013-03; "
            "if this is normal, re-profile over a longer reference: "
            "perennial validate --profile 2013-01..2013-04",
        ),
    ),
    Case(
        "unseen categories above tolerance",
        lambda f: with_column(f, "origin", "XYZ", share=0.2),
        "expect_column_values_to_be_in_set",
        "origin",
    ),
    Case(
        "dates outside the batch period",
        lambda f: with_column(f, "time_hour", "2013-07-15T12:00:00Z"),
        "expect_column_values_to_be_between",
        "time_hour",
    ),
    Case(
        "far too few rows",
        lambda f: csv_bytes(f.head(50)),
        "expect_table_row_count_to_be_between",
        None,
    ),
    # content-level: the batch against how the reference batches varied (tasks/reference_checks)
    Case(
        "a complete feature empty in every row",
        lambda f: with_column(f, "distance", None),
        "reference_null_share",
        "distance",
        words=("distance: null share 1 outside the allowed [0, 0.05]",),
    ),
    Case(
        "1% of distances off by three orders of magnitude",
        lambda f: with_column(f, "distance", f["distance"] * 1000, share=0.01),
        "reference_outliers",
        "distance",
        words=("share of values outside [0, 17295]",),
    ),
    Case(
        "every label the same",
        lambda f: with_column(f, "arr_delay", f["arr_delay"].where(f["arr_delay"].isna(), 0)),
        "reference_label_rate",
        "arr_delay",
        words=("label positive rate 0 outside the allowed",),
    ),
    Case(
        "temperatures in Celsius",
        lambda f: with_column(f, "temp", ((f["temp"] - 32) * 5 / 9).round(2)),
        "reference_relation",
        "temp, dewp",
        words=("share of rows with temp < dewp",),
    ),
    Case(
        "distances in kilometres",
        lambda f: with_column(f, "distance", (f["distance"] * 1.609).round()),
        "reference_median",
        "distance",
        words=("distance: median 1", "the reference batches (2013-01..2013-03) ranged 872 to 888"),
    ),
    # file-level: checked on the raw bytes before GE
    Case("empty file", lambda f: b"", "file_not_empty", None),
    Case("header only", lambda f: csv_bytes(f.head(0)), "file_has_rows", None),
    Case(
        "truncated gzip",
        lambda f: truncated(csv_bytes(f), "gzip"),
        "file_readable",
        None,
        ".csv.gz",
    ),
    Case(
        "truncated zip", lambda f: truncated(csv_bytes(f), "zip"), "file_readable", None, ".csv.zip"
    ),
    Case(
        "CSV cut off at 30% of its length",
        lambda f: cut_off(csv_bytes(f), 0.3),
        "truncated_file",
        None,
        words=("truncated file: line 8414 does not end with a newline",),
    ),
    Case(
        "CSV cut off mid-row after the key columns",
        lambda f: cut_after_keys(csv_bytes(f)),
        "truncated_file",
        None,
    ),
    Case(
        "binary file named .csv",
        lambda f: bytes(range(256)) * 400,
        "file_format",
        None,
    ),
    Case(
        "semicolon delimiter",
        lambda f: f.to_csv(index=False, sep=";").encode(),
        "file_delimiter",
        None,
    ),
    Case(
        "huge single line",
        lambda f: csv_bytes(f).replace(b"\n", b"\r", 2000).replace(b"\r", b"\n", 1),
        "file_line_length",
        None,
    ),
    Case(
        "latin-1 encoding",
        lambda f: with_column(f, "dest", "MÜN", share=0.01).decode().encode("latin-1"),
        "file_encoding",
        None,
    ),
    Case(
        "duplicated header",
        lambda f: csv_bytes(f.rename(columns={"minute": "hour"})),
        "file_header_unique",
        None,
    ),
]


@pytest.fixture
def case_home(prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    """A fresh PERENNIAL_HOME per case."""
    monkeypatch.setenv("PERENNIAL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "false")  # built once, in its own test
    return Storage(tmp_path / "home")


def assert_quarantined(storage: Storage, case: Case, output: str, source: bytes) -> None:
    assert case.rule in output, output
    for words in case.words:
        assert words in output, output
    if case.column:
        assert case.column in output, output
    else:
        assert f"{BATCH}{case.suffix}" in output or "table" in output, output
    reason = storage.read_json(f"quarantine/flights/{BATCH}.reason.json")
    failed = [f for f in reason["failed"] if f["expectation"] == case.rule]
    assert failed, reason
    if case.rule.startswith("file_"):
        assert reason["stage"] == "file_check" and failed[0]["column"] is None
    landed = [k for k in storage.list("landing/flights") if not k.endswith(".json")]
    assert landed == [f"landing/flights/{BATCH}{case.suffix}"]
    assert storage.read_bytes(landed[0]) == source  # raw untouched
    assert storage.read_bytes(f"quarantine/flights/{BATCH}{case.suffix}") == source
    assert not storage.list("validated/flights")
    record = landed_record(storage, load_config(FLIGHTS), BATCH)
    assert record is not None and reason["sha256"] == record.sha256
    assert is_quarantined(storage, load_config(FLIGHTS), record)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_batch_is_refused_by_the_cli(
    case: Case,
    case_home: Storage,
    april: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = case.make(april)
    path = tmp_path / f"incoming{case.suffix}"
    path.write_bytes(source)

    result = CliRunner().invoke(app, ["ingest", "--batch", BATCH, "--source", str(path)])

    assert result.exit_code == 1, result.output
    assert_quarantined(case_home, case, result.output, source)


def test_a_file_over_the_size_limit_is_quarantined(
    case_home: Storage,
    april: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERENNIAL_VALIDATION__MAX_FILE_MB", "1")
    source = csv_bytes(april)
    path = tmp_path / "big.csv"
    path.write_bytes(source)
    result = CliRunner().invoke(app, ["ingest", "--batch", BATCH, "--source", str(path)])
    assert result.exit_code == 1, result.output
    case = Case("too large", lambda f: source, "file_size", None)
    assert_quarantined(case_home, case, result.output, source)


def test_a_missing_source_file_is_refused(case_home: Storage, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    result = CliRunner().invoke(app, ["ingest", "--batch", BATCH, "--source", str(missing)])
    assert result.exit_code == 1
    assert "nowhere.csv" in result.output and "not found" in result.output
    assert not case_home.list("landing/flights")


def test_a_warning_only_batch_passes_and_its_report_shows_the_warnings(
    case_home: Storage, april: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "PERENNIAL_VALIDATION__SEVERITY", '{"expect_column_values_to_be_in_set:origin": "warning"}'
    )
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "true")
    path = tmp_path / "april.csv"
    path.write_bytes(with_column(april, "origin", "XYZ", share=0.2))

    result = CliRunner().invoke(app, ["ingest", "--batch", BATCH, "--source", str(path)])

    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output
    assert "WARNING expect_column_values_to_be_in_set on column 'origin' (warning)" in result.output
    assert case_home.exists(f"validated/flights/{BATCH}.parquet")
    assert not case_home.list("quarantine/flights")
    markdown = gate_artifact(f"gate-flights-{BATCH}")
    assert "| expect_column_values_to_be_in_set | origin | warning | warn" in markdown
    wait_idle(case_home.path("data_docs"))  # rendered after the command, in the background
    docs = case_home.path("data_docs/index.html")
    assert docs.is_file()
    pages = [p.read_text() for p in docs.parent.rglob("*.html")]
    assert not any("great-expectations-web-assets" in page for page in pages)


def gate_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, key
    return str(sorted(found, key=lambda a: a.created)[-1].data)


def test_a_corrected_file_lands_as_a_revision_and_passes(
    case_home: Storage, april: pd.DataFrame, tmp_path: Path
) -> None:
    bad, good = tmp_path / "bad.csv", tmp_path / "good.csv"
    bad.write_bytes(csv_bytes(april.drop(columns=["carrier"])))
    good.write_bytes(csv_bytes(april))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "-b", BATCH, "--source", str(bad)]).exit_code == 1

    result = runner.invoke(app, ["ingest", "-b", BATCH, "--source", str(good)])

    assert result.exit_code == 0, result.output
    assert "landing revised, gate passed" in result.output
    assert case_home.read_bytes(f"landing/flights/{BATCH}.csv") == bad.read_bytes()
    assert case_home.read_bytes(f"landing/flights/{BATCH}.r2.csv") == good.read_bytes()
    assert case_home.exists(f"quarantine/flights/{BATCH}.r1.reason.json")
    again = runner.invoke(app, ["ingest", "-b", BATCH, "--source", str(bad)])
    assert again.exit_code == 1 and "not quarantined" in again.output


def test_the_real_cli_process_refuses_a_bad_batch(
    case_home: Storage,
    april: pd.DataFrame,
    prefect_api_url: str,
    tmp_path: Path,
) -> None:
    case = next(c for c in CASES if c.name == "out-of-range values")
    source = case.make(april)
    path = tmp_path / "april.csv"
    path.write_bytes(source)
    done = run_perennial(
        {"PREFECT_API_URL": prefect_api_url},
        *("ingest", "--batch", BATCH, "--source", str(path)),
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert_quarantined(case_home, case, done.stdout + done.stderr, source)


def test_a_quarantined_batch_is_refused_by_training_and_scoring(
    case_home: Storage, april: pd.DataFrame, tmp_path: Path
) -> None:
    from flows.inference import inference
    from flows.training import training
    from tasks.data.validate import GateRefusedError

    path = tmp_path / "april.csv"
    path.write_bytes(csv_bytes(april.drop(columns=["carrier"])))
    assert CliRunner().invoke(app, ["ingest", "-b", BATCH, "--source", str(path)]).exit_code == 1

    with pytest.raises(GateRefusedError, match=f"{BATCH}.*reason.json"):
        training(batches=f"2013-02..{BATCH}", trials=1, reason="test: quarantined")
    with pytest.raises(GateRefusedError, match=f"{BATCH}.*reason.json"):
        inference(batch=BATCH)
    assert not case_home.exists(catalog.key("predictions", load_config(FLIGHTS), batch=BATCH))
    assert not case_home.exists(f"validated/flights/{BATCH}.parquet")
