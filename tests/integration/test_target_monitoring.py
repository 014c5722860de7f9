"""Monitor and report on a regression and a multiclass champion, through the real flows: the
synthetic sensors dataset of test_second_dataset with its peak load predicted as a value and as
one of three bands. The monitor judges each in its own metric, estimates it before labels (DLE,
CBPE per class) close to what the labels then give, and the page names the metric; a regression
champion's output never says AUC."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.training import training
from tests.integration.test_second_dataset import CONFIG, sensors_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TARGETS = {
    "regression": ("target: {name: peak, column: peak, task: regression}", "rmse", "DLE"),
    "multiclass": (
        "target: {name: band, column: peak, task: multiclass, bins: [55, 80], "
        "classes: [low, mid, high]}",
        "macro_auc",
        "CBPE",
    ),
}
BINARY_TARGET = 'target: {name: overheat, column: peak, expression: "peak > 80"}'
BINARY_PROMOTION = "promotion: {primary_floor: 0.55, positive_rate_bounds: [0.05, 0.95]}"


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_monitor_and_report_speak_the_task_metric(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, task: str
) -> None:
    target, metric, method = TARGETS[task]
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # the YAML's relative paths (home, incoming) are under it
    yaml = CONFIG.replace(BINARY_TARGET, target).replace(BINARY_PROMOTION, "")
    monkeypatch.setattr("tests.integration.test_second_dataset.CONFIG", yaml)
    config_path, _, _ = sensors_project(tmp_path, "2024-W05")
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))
    training(batches="2024-W01..2024-W03", dataset="sensors")
    training(batches="2024-W01..2024-W04", dataset="sensors")  # the champion of W05 on

    runner = CliRunner()
    result = runner.invoke(
        app, ["monitor", "--batch", "2024-W05", "--config", str(config_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.output[result.output.index("{") :])
    assert found["metric"] == metric and found["holdout_interval"] is not None
    realised = found["labelled"][metric]
    estimated = found["estimated"]
    assert estimated["method"] == method and estimated["metric"] == metric
    assert estimated["realised"] == pytest.approx(realised)
    # The same relation every week: the estimate before labels lands near the real value.
    assert abs(estimated["value"] - realised) < (0.1 * realised if task == "regression" else 0.05)
    human = runner.invoke(app, ["monitor", "--batch", "2024-W05", "--config", str(config_path)])
    assert human.exit_code == 0, human.output
    title = {"rmse": "RMSE", "macro_auc": "macro AUC"}[metric]
    assert f"champion {title} estimated before labels ({method})" in human.output
    assert f"champion {title} " in human.output.split("\n")[1]  # the verdict's reason
    if task == "regression":
        assert "AUC" not in human.output and "auc" not in result.output.lower()

    page = runner.invoke(app, ["report", "--config", str(config_path), "--json"])
    assert page.exit_code == 0, page.output
    html = Path(json.loads(page.output)["path"]).read_text()
    assert f"<th>{title}</th>" in html and f"its {title}" in html
