"""`perennial init --from FILE`: a draft YAML a person reviews, that loads once a target is set."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tasks.data.draft_config import DraftError, association, plan_columns, write_draft


def weather_like(rows: int = 730, seed: int = 0) -> pd.DataFrame:
    """Daily rows over two years; `rain` is measured with `sky`, a candidate target: a leak."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2012-01-01", periods=rows, freq="D")
    temp = rng.normal(12, 6, rows).round(1)
    rain = rng.gamma(0.6, 5, rows).round(1) * (rng.random(rows) < 0.5)
    sky = np.where(rain > 0.5, "wet", rng.choice(["sun", "fog"], rows))  # measured with rain
    return pd.DataFrame(
        {
            "date": days.strftime("%Y/%m/%d"),
            "rain": rain,
            "temp": temp,
            "wind": rng.gamma(2, 2, rows).round(1),
            "station": rng.choice(["north", "south"], rows),
            "row_id": np.arange(rows),
            "sky": sky,
        }
    )


def test_columns_time_period_targets_and_leaks() -> None:
    plan = plan_columns(weather_like())
    assert plan.time == "date"
    assert plan.numeric == ["rain", "temp", "wind"]
    assert plan.categorical == ["station", "sky"]
    assert "row_id" in plan.left_out  # a distinct integer per row: an id
    assert set(plan.targets) == {"station", "sky"}
    assert any("candidate target sky" in why for why in plan.leaks["rain"])
    assert "wind" not in plan.leaks and "temp" not in plan.leaks


def test_association_is_one_for_a_copy_and_near_zero_for_noise() -> None:
    rng = np.random.default_rng(1)
    target = pd.Series(rng.choice(["a", "b", "c"], 2000))
    assert association(target, target.map({"a": 1.0, "b": 2.0, "c": 3.0})) == pytest.approx(1.0)
    assert association(target, pd.Series(rng.normal(size=2000))) < 0.02


def test_the_draft_loads_once_a_target_is_set(tmp_path: Path) -> None:
    data = tmp_path / "incoming" / "weather.csv"
    data.parent.mkdir()
    weather_like().to_csv(data, index=False)
    out = write_draft(data, "weather", tmp_path / "configs" / "weather.yaml")
    text = out.read_text()
    assert "batch_period: month" in text and "timezone: UTC" in text
    assert re.search(r"^\s+rain,\s+# LEAK\? .*sky", text, re.M)
    with pytest.raises(ConfigError, match="target"):  # no target yet: it does not load
        load_config(out)
    chosen = text + "\ntarget: {name: wet, column: sky, expression: \"sky == 'wet'\"}\n"
    out.write_text(chosen)
    with pytest.raises(ConfigError, match="'sky' is also listed as a feature"):
        load_config(out)
    out.write_text(re.sub(r"^\s+sky,.*\n", "", chosen, flags=re.M))
    config = load_config(out)
    assert config.features.numeric == ["rain", "temp", "wind"]
    assert config.features.categorical == ["station"]
    assert config.source.path_template == str(tmp_path / "configs" / "../incoming/{batch}.csv")
    assert Path(config.home) == tmp_path / ".perennial"
    assert config.hpo.trials == 20  # the config model's default


def test_init_never_overwrites_and_refuses_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "weather.csv"
    weather_like(60).to_csv(data, index=False)
    out = tmp_path / "configs" / "weather.yaml"
    runner = CliRunner()
    first = runner.invoke(app, ["init", "--from", str(data), "--out", str(out)])
    assert first.exit_code == 0, first.output
    assert "batch_period: week" in out.read_text()  # 60 days: weeks
    before = out.read_bytes()
    again = runner.invoke(app, ["init", "--from", str(data), "--out", str(out)])
    assert again.exit_code == 1
    assert again.output.strip().count("\n") == 0 and "already exists" in again.output
    assert out.read_bytes() == before
    missing = runner.invoke(app, ["init", "--from", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 1 and "file not found" in missing.output
    with pytest.raises(DraftError, match="dataset name"):
        write_draft(data, "../evil", tmp_path / "x.yaml")


def delays(rows: int = 400, seed: int = 2) -> pd.DataFrame:
    """Flights with a delay in minutes, its band as text labels and a yes/no column."""
    rng = np.random.default_rng(seed)
    delay = rng.gumbel(-5, 25, rows).round()
    return pd.DataFrame(
        {
            "scheduled": pd.date_range("2013-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "distance": rng.integers(100, 2500, rows),
            "carrier": rng.choice(["AA", "B6", "UA"], rows),
            "arr_delay": delay,
            "band": np.array(["on time", "late", "very late"])[np.digitize(delay, [15, 60])],
            "diverted": np.where(rng.random(rows) < 0.1, "yes", "no"),
        }
    )


@pytest.mark.parametrize(
    ("column", "task", "line"),
    [
        ("arr_delay", "regression", 'name: "arr-delay"'),
        ("band", "multiclass", 'classes: ["on time", "late", "very late"]'),
        ("diverted", "binary", "expression: \"diverted == 'yes'\""),
    ],
)
def test_init_with_a_target_proposes_its_task_and_the_draft_loads(
    tmp_path: Path, column: str, task: str, line: str
) -> None:
    data = tmp_path / "flights.csv"
    delays().to_csv(data, index=False)
    out = tmp_path / "configs" / "flights.yaml"
    result = CliRunner().invoke(
        app, ["init", "--from", str(data), "--out", str(out), "--target", column]
    )
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert f"target:                      # {task}" in text and line in text
    config = load_config(out)  # loads as written: the target column is not a feature
    assert config.target.task == task and config.target.column == column
    assert column not in config.features.columns
    assert config.primary_metric == {"regression": "rmse", "multiclass": "macro_auc"}.get(
        task, "roc_auc"
    )


def test_without_a_target_each_candidate_shows_its_proposed_task(tmp_path: Path) -> None:
    data = tmp_path / "flights.csv"
    delays().to_csv(data, index=False)
    text = write_draft(data, "flights", tmp_path / "flights.yaml").read_text()
    assert '#   task: "multiclass"' in text or '#   task: "binary"' in text
    too_many = CliRunner().invoke(
        app,
        ["init", "--from", str(data), "--out", str(tmp_path / "x.yaml"), "--target", "scheduled"],
    )
    assert too_many.exit_code == 1 and "distinct text values" in too_many.output
    missing = CliRunner().invoke(
        app, ["init", "--from", str(data), "--out", str(tmp_path / "y.yaml"), "--target", "nope"]
    )
    assert missing.exit_code == 1 and "not in the file" in missing.output
