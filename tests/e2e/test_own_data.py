"""Your own data in ten minutes: a second public dataset, daily Seattle weather 2012-2015
(vega_datasets ships it; no download), goes from one CSV to a champion with the commands a new
user runs: `init` drafts the YAML, the user sets the zone and the target (a text edit, no code,
no JSON), `ingest --batches` lands the monthly files, `validate --profile` drafts the suite,
`train` promotes a champion. Its dates carry no offset and it lives in America/Los_Angeles:
read as UTC, the first day of each month fell in the month before and every batch failed the
gate."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_perennial

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

YEAR = "2012-01..2012-12"


def seattle_weather() -> Path:
    spec = importlib.util.find_spec("vega_datasets")
    assert spec is not None and spec.submodule_search_locations, "uv sync installs vega_datasets"
    path = Path(next(iter(spec.submodule_search_locations))) / "_data" / "seattle-weather.csv"
    assert path.is_file()  # shipped in the wheel: nothing is downloaded
    return path


def arrive_monthly(history: Path, folder: Path, months: int) -> None:
    """The user's data arriving month by month: the CSV's own lines, one file a month."""
    header, *lines = history.read_text().splitlines()
    by_month: dict[str, list[str]] = {}
    for line in lines:  # dates are written 2012/01/01
        by_month.setdefault(line[:7].replace("/", "-"), []).append(line)
    for month in sorted(by_month)[:months]:
        (folder / f"{month}.csv").write_text("\n".join([header, *by_month[month]]) + "\n")


def set_zone_and_target(draft: str) -> str:
    """What the user edits in the draft: the zone, the target, and the flagged leak."""
    edited = draft.replace("timezone: UTC ", "timezone: America/Los_Angeles ")
    edited = re.sub(r"^\s+(weather|precipitation),.*\n", "", edited, flags=re.M)
    edited = edited.replace("forbidden: []", "forbidden: [precipitation]")
    return edited + "\ntarget: {name: rain, column: weather, expression: \"weather == 'rain'\"}\n"


def test_seattle_weather_from_csv_to_champion(tmp_path: Path, prefect_api_url: str) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    history = incoming / "seattle-weather.csv"
    history.write_bytes(seattle_weather().read_bytes())
    arrive_monthly(history, incoming, months=12)
    env = {"PERENNIAL_HOME": str(tmp_path / "home"), "PREFECT_API_URL": prefect_api_url}

    def perennial(*args: str) -> subprocess.CompletedProcess[str]:
        return run_perennial(env, *args, timeout=600)

    config = tmp_path / "configs" / "seattle.yaml"
    drafted = perennial("init", "--from", str(history), "--name", "seattle", "--out", str(config))
    assert drafted.returncode == 0, drafted.stderr
    draft = config.read_text()
    assert "column: date" in draft and "batch_period: month" in draft
    assert re.search(r"^\s+precipitation,\s+# LEAK\? .*candidate target weather", draft, re.M)
    config.write_text(set_zone_and_target(draft))

    landed = perennial("ingest", "-c", str(config), "--batches", YEAR, "--no-validate", "--json")
    assert landed.returncode == 0, landed.stderr
    assert json.loads(landed.stdout)["landed"] == 12

    profiled = perennial("validate", "-c", str(config), "--profile", YEAR)
    assert profiled.returncode == 0, profiled.stderr

    trained = perennial("train", "-c", str(config), "--batches", YEAR, "--trials", "2", "--json")
    assert trained.returncode == 0, trained.stderr + trained.stdout
    result = json.loads(trained.stdout[trained.stdout.index("{") :])
    assert result["promoted"] and result["model"] == "seattle-rain"

    status = json.loads(perennial("status", "-c", str(config), "--json").stdout)
    assert status["champion"]["version"] == "1"

    # Each month holds all its days, and the validated data keeps the dates as they arrived.
    home = tmp_path / "home"
    february = pd.read_parquet(home / "validated" / "seattle" / "2012-02.parquet")
    assert len(february) == 29 and february["date"].iloc[0] == "2012/02/01"
    assert not (home / "quarantine" / "seattle").exists()
