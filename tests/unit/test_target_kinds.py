"""The target's task: what the YAML accepts for each kind, the labels it makes and the metrics
that judge it (tasks/core/metrics.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_section import ConfigError
from tasks.core.metrics import METRICS, TASK_METRICS, paired_bootstrap_gain
from tasks.data.features import label

FLIGHTS = "configs/flights.yaml"
ORIGIN = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _configs_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def config_with(**fields: object) -> PerennialConfig:
    raw = yaml.safe_load(Path(ORIGIN, FLIGHTS).read_text())
    raw.update(fields)
    raw.pop("guard_metrics", None)
    path = Path(f"config-{abs(hash(repr(fields)))}.yaml")
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def flights_with(**target: object) -> PerennialConfig:
    base = {"name": "delay", "column": "arr_delay"}
    return config_with(target={**base, **target}, primary_metric="")


def test_each_task_defaults_to_its_first_metric() -> None:
    assert flights_with(task="regression").primary_metric == "rmse"
    band = flights_with(task="multiclass", bins=[15, 60], classes=["on-time", "late", "very"])
    assert band.primary_metric == "macro_auc"
    assert load_config(ORIGIN / FLIGHTS).primary_metric == "roc_auc"


def test_a_metric_of_another_task_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not judge a regression target"):
        config_with(
            target={"name": "delay", "column": "arr_delay", "task": "regression"},
            primary_metric="roc_auc",
        )


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"task": "binary"}, "needs `expression`"),
        ({"task": "multiclass", "classes": ["a", "b"]}, "at least 3"),
        ({"task": "multiclass", "bins": [15], "classes": ["a", "b", "c"]}, "make 2 pieces"),
        ({"task": "multiclass", "bins": [60, 15], "classes": ["a", "b", "c"]}, "increasing"),
        ({"task": "regression", "classes": ["a", "b", "c"]}, "for task: multiclass"),
    ],
)
def test_a_target_missing_its_fields_is_refused(target: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        flights_with(**target)


def test_labels_follow_the_task() -> None:
    frame = pd.DataFrame({"arr_delay": [-3.0, 15.0, 15.5, 60.0, 200.0]})
    minutes = label(frame, flights_with(task="regression"))
    assert minutes.dtype == np.float64 and minutes.tolist() == frame["arr_delay"].tolist()
    band = flights_with(task="multiclass", bins=[15, 60], classes=["on-time", "late", "very"])
    assert label(frame, band).tolist() == [0, 0, 1, 1, 2]
    hours = label(frame, flights_with(task="regression", expression="arr_delay / 60"))
    assert hours.tolist() == pytest.approx([v / 60 for v in frame["arr_delay"]])


def test_class_names_are_looked_up_and_an_unknown_one_is_minus_one() -> None:
    frame = pd.DataFrame({"arr_delay": [1.0], "band": ["b"]}).iloc[[0, 0, 0]]
    frame["band"] = ["b", "c", "zzz"]
    config = flights_with(task="multiclass", column="band", classes=["a", "b", "c"])
    assert label(frame, config).tolist() == [1, 2, -1]


def test_every_task_metric_is_registered_and_directed() -> None:
    for names in TASK_METRICS.values():
        assert all(name in METRICS for name in names)
    assert METRICS["rmse"].gain(1.0, 2.0) == 1.0  # lower is better: 1 beats 2 by 1
    assert METRICS["roc_auc"].gain(0.7, 0.6) == pytest.approx(0.1)


def test_a_better_regressor_has_a_positive_gain_interval() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=2000)
    good, bad = y + rng.normal(scale=0.5, size=2000), y + rng.normal(scale=1.0, size=2000)
    low, high = paired_bootstrap_gain(METRICS["rmse"], y, good, bad, 200, 0.95, 0)
    assert 0 < low < high
    low, high = paired_bootstrap_gain(METRICS["rmse"], y, bad, good, 200, 0.95, 0)
    assert low < high < 0


def test_macro_auc_scores_each_class_against_the_rest() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    perfect = np.eye(3)[y]
    assert METRICS["macro_auc"].compute(y, perfect) == 1.0
    assert METRICS["macro_auc"].compute(y, perfect[:, ::-1]) < 1.0
