"""A/B arms on live traffic joined to labels (tasks.watch.arms) on real local storage: live key
values
stored as text join the labelled batch's numbers and times; each arm is scored on its own rows
with the scores it served; nothing to compare gives None."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tasks.core import catalog
from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.registry.client import CHALLENGER, CHAMPION
from tasks.watch.arms import compare_arms
from tasks.watch.live import ARM, RECEIVED_AT, REQUEST_KEY, SCORE, VERSION
from tests.unit.test_serve_live import LIVE_CONFIG


@pytest.fixture
def config(tmp_path: Path) -> PerennialConfig:
    path = tmp_path / "sensors.yaml"
    path.write_text(
        LIVE_CONFIG.replace("key_columns: [reading_id]", "key_columns: [reading_id, measured_at]")
    )
    return load_config(path)


def test_arms_join_labels_on_typed_keys_and_score_each_arm(config: PerennialConfig) -> None:
    storage = Storage(config.home)
    rng = np.random.default_rng(3)
    rows = 400
    times = pd.date_range("2024-03-25", periods=rows, freq="15min", tz="UTC")
    peak = rng.normal(80, 10, rows)
    labelled = pd.DataFrame(
        {
            "reading_id": np.arange(rows, dtype=np.int64),
            "measured_at": times,
            "load": rng.uniform(0, 100, rows),
            "ambient": rng.normal(20, 5, rows),
            "site": rng.choice(["north", "south"], rows),
            "peak": np.where(np.arange(rows) % 10 == 0, np.nan, peak),  # some labels missing
        }
    )
    storage.write_parquet(catalog.key("validated", config, batch="2024-W13"), labelled)
    arm = np.where(np.arange(rows) % 3 == 0, CHALLENGER, CHAMPION)
    score = 1 / (1 + np.exp(-(peak - 80) / 5 + rng.normal(0, 1, rows)))
    live = pd.DataFrame(
        {
            "reading_id": [str(i) for i in range(rows)],  # stored as text, as the sampler does
            "measured_at": times,
            SCORE: score,
            VERSION: np.where(arm == CHALLENGER, "7", "6"),
            ARM: arm,
            REQUEST_KEY: None,
            RECEIVED_AT: times,
        }
    )
    live.loc[5, "reading_id"] = "not-a-number"  # joins nothing rather than the wrong row
    for part, chunk in enumerate((live.iloc[:150], live.iloc[150:])):  # two parts, one batch
        key = catalog.key("live_part", config, batch="2024-W13", part=f"p{part}")
        storage.write_parquet(key, chunk)

    report = compare_arms(storage, config, "2024-W13")
    assert report is not None
    has_label = ~np.isnan(labelled["peak"].to_numpy())
    has_label[5] = False
    assert report.live_rows == rows and report.rows == int(has_label.sum())
    for alias, found, version in (
        (CHAMPION, report.champion, "6"),
        (CHALLENGER, report.challenger, "7"),
    ):
        mine = has_label & (arm == alias)
        assert found is not None and found.versions == [version]
        assert found.rows == int(mine.sum())
        expected = roc_auc_score(peak[mine] > 80, score[mine])
        assert found.metric == "roc_auc" and found.value == pytest.approx(expected, abs=1e-12)
    assert report.gain is not None and report.champion and report.challenger
    assert report.gain.value == pytest.approx(report.challenger.value - report.champion.value)


def test_nothing_to_compare_gives_none(config: PerennialConfig) -> None:
    storage = Storage(config.home)
    assert compare_arms(storage, config, "2024-W13") is None  # no labelled batch
    frame = pd.DataFrame({"reading_id": [1], "measured_at": [pd.Timestamp("2024-03-26", tz="UTC")]})
    storage.write_parquet(catalog.key("validated", config, batch="2024-W13"), frame)
    assert compare_arms(storage, config, "2024-W13") is None  # no live traffic for its period
