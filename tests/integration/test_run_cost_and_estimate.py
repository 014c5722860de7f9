"""A real training run records its cost (MLflow metrics, model card, `perennial status`), and
monitoring estimates the champion's AUC on a new batch before labels (CBPE), the real AUC
beside it. The tiny synthetic dataset of test_second_dataset trains in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.monitoring import monitoring
from flows.training import training
from tasks.core import catalog
from tasks.core.batches import expand_range
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.ingest import land_batch
from tasks.data.source import extract_from_source
from tasks.data.suite import profile_landed
from tasks.registry.client import CHAMPION, connect, version_by_alias
from tests.integration.test_second_dataset import CONFIG, write_week

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_training_records_its_cost_and_monitoring_estimates_auc_before_labels(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # the YAML's relative paths (home, incoming) are under it
    (tmp_path / "incoming").mkdir()
    config_path = tmp_path / "sensors.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    batches = expand_range("2024-W01..2024-W05", config.time)
    for seed, batch in enumerate(batches):
        write_week(tmp_path / "incoming", batch, seed)
    storage = Storage(config.home)
    for batch in batches[:2]:
        land_batch(storage, config, batch, *extract_from_source(config, batch))
    profile_landed(storage, config, batches[:2])
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))

    result = training(batches="2024-W01..2024-W04", dataset="sensors")
    champion = version_by_alias(config, CHAMPION)
    assert champion is not None and champion.version == result.version

    # Cost: per stage and for the run, as metrics of the run that registered the version.
    metrics = connect(config).get_run(champion.run_id).data.metrics
    for stage in ("gate", "features", "tune", "train", "evaluate", "refit", "register"):
        assert metrics[f"cost_{stage}_wall_seconds"] > 0
        assert f"cost_{stage}_cpu_seconds" in metrics
    assert metrics["cost_cpu_seconds"] > 0 and metrics["cost_tune_cpu_seconds"] > 0
    assert metrics["cost_peak_rss_mb"] > 50
    assert metrics["cost_written_bytes"] > 0 and metrics["cost_read_bytes"] > 0
    assert metrics["cost_usd"] > 0
    card = connect(config).download_artifacts(champion.run_id, "model_card.md", str(tmp_path))
    assert "## Cost of this run" in Path(card).read_text()
    status = CliRunner().invoke(app, ["status", "--config", str(config_path), "--json"])
    assert status.exit_code == 0, status.output
    costs = json.loads(status.output)["costs"]
    assert costs[0]["version"] == champion.version
    assert costs[0]["usd"] == pytest.approx(metrics["cost_usd"])
    human = CliRunner().invoke(app, ["status", "--config", str(config_path)])
    assert f"v{champion.version}: " in human.output and "estimated $" in human.output

    # Before labels: the estimate rests on the calibration map kept in the reference profile.
    profile = storage.read_json(catalog.key("reference", config, version=champion.version))
    assert profile["calibration"]["method"] == "isotonic"
    report = monitoring(batch="2024-W05", dataset="sensors")
    estimated = report.estimated
    assert estimated is not None and estimated.method == "CBPE"
    assert estimated.realised is not None
    # Same relation in every week (no concept drift): the estimate holds.
    assert abs(estimated.value - estimated.realised) < 0.03
