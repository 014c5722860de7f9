"""`perennial replay` on a small dataset of its own: every policy over the validated history,
the summary stored for the report page, and the page drawing it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tests.integration.test_second_dataset import sensors_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_replay_compares_the_policies_and_the_report_draws_them(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    config_path, weeks, _ = sensors_project(tmp_path, "2024-W06")
    config = load_config(config_path)
    storage = Storage(config.home)

    runner = CliRunner()
    done = runner.invoke(
        app,
        [
            "replay",
            "--batches",
            f"{weeks[0]}..{weeks[-1]}",
            "--seeds",
            "2",
            "--json",
            "-c",
            str(config_path),
        ],
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.output[done.output.index("{") :])
    assert result["batches"] == weeks[3:]  # a first model on W01-W03, then three served weeks
    assert result["seeds"] == [0, 1]
    policies = result["policies"]
    assert set(policies) == {"configured", "every_batch", "never", "every_3"}
    assert policies["never"]["retrains"] == 0
    assert policies["every_batch"]["retrains"] == 2  # after W04 and W05; W06 has none to serve
    assert policies["every_3"]["retrains"] == 0  # its first retrain would follow W06
    for summary in policies.values():
        assert len(summary["per_batch"]) == 3
        assert 0.5 < summary["mean_realized"] <= 1.0
    assert storage.read_json("reports/sensors/replay.json")["policies"] == policies

    page = runner.invoke(app, ["report", "--json", "-c", str(config_path)])
    assert page.exit_code == 0, page.output
    html = (storage.root / "reports" / f"{config.model_name}.html").read_text()
    assert "Retrain policies replayed" in html and "No replay yet" not in html
    assert "<td>every_batch</td>" in html


def test_the_refit_policy_loses_nothing_on_the_second_dataset(tmp_path: Path) -> None:
    """The policy since the served model is refit on its holdout (and retrained monthly) against
    the one before (retrain on alerts only, the holdout kept out of the served model), on the
    sensors dataset's twelve weeks, over three seeds."""
    from statistics import fmean

    from tasks.watch.labelled_batches import load_batches
    from tasks.watch.replay import ModelCache, replay
    from tasks.watch.retrain_policies import Policy, configured_policy

    config_path, weeks, _ = sensors_project(tmp_path, "2024-W12")
    config = load_config(config_path)
    assert config.split.refit_on_holdout  # the default
    data = load_batches(config, weeks)
    now, before = [], []
    for seed in (0, 1, 2):
        models = ModelCache()
        now.append(replay(config, data, configured_policy(config), seed, models=models))
        before.append(replay(config, data, Policy("configured"), seed, models=models))
    assert all(r.retrained_after for r in now)  # the monthly schedule: every 4 weekly batches
    gain = fmean(r.mean_realized for r in now) - fmean(r.mean_realized for r in before)
    print(f"sensors: realized AUC, refit policy minus the one before: {gain:+.4f}")
    assert gain >= -0.002
