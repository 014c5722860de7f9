"""`ingest --folder DIR` / `--batches A..B`: which files name which batches, and the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.core.results import jsonable
from tasks.data.bulk_ingest import (
    BatchPlan,
    RefusedBatch,
    batch_of_name,
    batch_plan,
    folder_plan,
    run_summary,
)
from tasks.data.raw_files import IngestError
from tasks.data.verdict import BatchSummary, GatedBatch

YAML = """
dataset: weather
source: {kind: files, path_template: "incoming/weather-{batch}.csv"}
time: {column: date, batch_period: month, timezone: America/Los_Angeles}
target: {name: rain, column: sky, expression: "sky == 'rain'"}
features: {numeric: [temp]}
validation: {suite: weather, gx_root: gx}
"""


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "weather.yaml"
    path.write_text(YAML)
    return load_config(path)


def test_file_names_that_are_batches(config) -> None:  # type: ignore[no-untyped-def]
    assert batch_of_name("2012-01.csv", config) == "2012-01"
    assert batch_of_name("2012-01.csv.gz", config) == "2012-01"
    assert batch_of_name("weather-2012-02.csv", config) == "2012-02"  # as path_template names it
    for other in ["2012-13.csv", "notes.txt", "seattle-weather.csv", "2012-01-05.csv", "..csv"]:
        assert batch_of_name(other, config) is None, other


def test_folder_plan_lands_batch_files_and_reports_the_rest(tmp_path: Path, config) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "arrivals"
    (folder / "2012-03").mkdir(parents=True)  # a folder named as a batch is not a file
    for name in ["2012-01.csv", "2012-02.parquet", "weather-2012-02.csv", "history.csv"]:
        (folder / name).write_text("date\n")
    (folder / "2012-04.csv").symlink_to(folder / "history.csv")
    plan = folder_plan(folder, config)
    assert plan.sources == {"2012-01": str((folder / "2012-01.csv").resolve())}
    assert "several files for batch 2012-02" in plan.refused["2012-02"]
    assert sorted(plan.skipped) == ["2012-03", "2012-04.csv", "history.csv"]


def test_plans_refuse_what_cannot_run(tmp_path: Path, config) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IngestError, match="either"):
        batch_plan(config, "2012-01", str(tmp_path), gate=False, served=False)
    with pytest.raises(IngestError, match="served"):
        batch_plan(config, "", str(tmp_path), gate=False, served=True)
    with pytest.raises(IngestError, match=r"no expectation suite .* --no-validate"):
        batch_plan(config, "2012-01..2012-02", None, gate=True, served=False)
    with pytest.raises(IngestError, match="no file named"):
        folder_plan(tmp_path, config)
    plan = batch_plan(config, "2012-11..2013-02", None, gate=False, served=False)
    assert list(plan.sources) == ["2012-11", "2012-12", "2013-01", "2013-02"]


def test_summary_fails_on_any_refused_or_quarantined_batch(config) -> None:  # type: ignore[no-untyped-def]
    ok = BatchSummary("seattle", "2012-01", "landed", "skipped")
    bad = RefusedBatch("seattle", "2012-02", "refused", "skipped", "no file")
    failed = GatedBatch(
        "seattle", "2012-03", "landed", "failed", "1 failed", 10, ["wind missing"], [], "r.json"
    )

    summary = run_summary(config, BatchPlan(sources={}), [ok, bad, failed])
    assert (summary.ok, summary.landed, summary.refused, summary.quarantined) == (
        False,
        2,
        {"2012-02": "no file"},
        {"2012-03": "wind missing (reason in r.json)"},
    )
    assert run_summary(config, BatchPlan(sources={}), [ok]).ok is True
    assert "error" not in jsonable(ok) and jsonable(bad)["error"] == "no file"
    assert jsonable(failed)["reason_key"] == "r.json"
