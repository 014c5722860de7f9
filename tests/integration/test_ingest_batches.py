"""`perennial ingest --folder DIR`: one flow run lands and gates every batch file of a folder; a
quarantined or refused batch is reported, the others still land, and the exit code is 1."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.ingest import land_batch
from tasks.data.source import extract_from_source
from tasks.data.suite import profile_landed
from tests.e2e.test_own_data import arrive_monthly, seattle_weather

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
dataset: seattle
home: home
source: {kind: files, path_template: "incoming/{batch}.csv"}
time: {column: date, batch_period: month, timezone: America/Los_Angeles}
target: {name: rain, column: weather, expression: "weather == 'rain'"}
features: {numeric: [temp_max, temp_min, wind], time: [day_of_week], forbidden: [precipitation]}
validation: {suite: seattle, gx_root: gx, data_docs: false}
"""


def test_a_folder_lands_in_one_run_and_failures_do_not_stop_the_others(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    # No PERENNIAL_CONFIGS_DIR: the CLI names the config's folder to the flow.
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    history = incoming / "seattle-weather.csv"
    history.write_bytes(seattle_weather().read_bytes())
    arrive_monthly(history, incoming, months=5)
    (tmp_path / "seattle.yaml").write_text(CONFIG)
    config = load_config(tmp_path / "seattle.yaml")
    storage = Storage(config.home)
    land_batch(storage, config, "2012-01", *extract_from_source(config, "2012-01"))
    profile_landed(storage, config, ["2012-01"])

    # April arrives without its wind column: quarantined. May arrives twice: refused.
    april = pd.read_csv(incoming / "2012-04.csv").drop(columns=["wind"])
    april.to_csv(incoming / "2012-04.csv", index=False)
    (incoming / "2012-05.csv").rename(incoming / "2012-05.csv.gz")
    (incoming / "2012-05.csv").write_text((incoming / "2012-04.csv").read_text())

    result = CliRunner().invoke(
        app, ["ingest", "-c", str(tmp_path / "seattle.yaml"), "--folder", str(incoming), "--json"]
    )
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    outcomes = {r["batch"]: (r["landing"], r["gate"]) for r in summary["batches"]}
    assert outcomes == {
        "2012-01": ("unchanged", "passed"),
        "2012-02": ("landed", "passed"),
        "2012-03": ("landed", "passed"),
        "2012-04": ("landed", "failed"),
        "2012-05": ("refused", "skipped"),
    }
    assert "wind" in summary["quarantined"]["2012-04"]  # the missing column is named
    assert "several files for batch 2012-05" in summary["refused"]["2012-05"]
    assert summary["skipped_files"] == ["seattle-weather.csv"]
    home = Path(config.home)
    assert (home / "validated" / "seattle" / "2012-03.parquet").is_file()  # after the failure
    assert (home / "quarantine" / "seattle" / "2012-04.reason.json").is_file()
    assert not (home / "landing" / "seattle" / "2012-05.csv").exists()
