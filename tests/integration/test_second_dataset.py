"""A second dataset is a second YAML, never new code: a synthetic dataset with its own config,
its own suite and its own registered model goes through the same training flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.training import training
from tasks.core.batches import expand_range
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.suite import profile_landed
from tasks.registry.client import CHAMPION, version_by_alias

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = """
dataset: sensors
home: state
format: csv
source: {kind: files, path_template: "incoming/{batch}.csv"}
time: {column: measured_at, batch_period: week, timezone: UTC}
target: {name: overheat, column: peak, expression: "peak > 80"}
features:
  numeric: [load, ambient]
  categorical: [site]
  time: [day_of_week]
  forbidden: [peak]
promotion: {primary_floor: 0.55, positive_rate_bounds: [0.05, 0.95]}
hpo: {trials: 2, max_rounds: 60, early_stopping_rounds: 10, seed: 3}
validation: {suite: sensors, gx_root: gx, min_rows: 100}
"""


def write_week(folder: Path, batch: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp.fromisocalendar(int(batch[:4]), int(batch[-2:]), 1).tz_localize("UTC")
    rows = 1500
    load = rng.uniform(0, 100, rows)
    ambient = rng.normal(20, 5, rows)
    site = rng.choice(["north", "south", "east"], rows)
    peak = 0.6 * load + ambient + np.where(site == "south", 10, 0) + rng.normal(0, 8, rows)
    frame = pd.DataFrame(
        {
            "measured_at": start + pd.to_timedelta(rng.uniform(0, 7 * 86400 - 1, rows), unit="s"),
            "load": load.round(2),
            "ambient": ambient.round(2),
            "site": site,
            "peak": peak.round(2),
        }
    )
    frame.to_csv(folder / f"{batch}.csv", index=False)


def sensors_project(folder: Path, last: str) -> tuple[Path, list[str], Path]:
    """The sensors YAML in `folder`, weeks 2024-W01..`last` in its source folder, the first two
    landed and profiled: the YAML's path, the weeks and the suite's path."""
    from tasks.data.ingest import land_batch
    from tasks.data.source import extract_from_source

    (folder / "incoming").mkdir()
    config_path = folder / "sensors.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    weeks = expand_range(f"2024-W01..{last}", config.time)
    for seed, week in enumerate(weeks):
        write_week(folder / "incoming", week, seed)
    storage = Storage(config.home)
    for week in weeks[:2]:
        land_batch(storage, config, week, *extract_from_source(config, week))
    return config_path, weeks, profile_landed(storage, config, weeks[:2])


def test_synthetic_dataset_trains_from_its_own_yaml(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    config_path, _, suite_file = sensors_project(tmp_path, "2024-W04")
    config = load_config(config_path)
    assert suite_file == tmp_path / "gx" / "expectations" / "sensors.json"

    # Flows name datasets (a YAML of the configs folder), never paths.
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))
    result = training(batches="2024-W01..2024-W04", dataset="sensors")

    assert result.model == "sensors-overheat" and result.promoted
    assert result.holdout == "2024-W04"
    champion = version_by_alias(config, CHAMPION)
    assert champion is not None and champion.version == result.version
    assert Path(config.home) == tmp_path / "state"
    assert (tmp_path / "state" / "validated" / "sensors" / "2024-W04.parquet").is_file()
    assert result.challenger is not None and result.challenger.roc_auc > 0.75
