"""Performance over time through the real flows: monitoring records the champion's metrics on
each labelled batch and refreshes the page; two training runs and a quarantined week (the gate's
plain function refuses it) join it; `perennial report` writes the page and prints where. The
tiny synthetic dataset of test_second_dataset trains in seconds."""

from __future__ import annotations

import json
import re
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
from tasks.data.validate import gate_batch
from tests.integration.test_second_dataset import CONFIG, write_week

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_monitoring_records_performance_and_perennial_report_shows_the_history(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    monkeypatch.chdir(tmp_path)  # the YAML's relative paths (home, incoming) are under it
    (tmp_path / "incoming").mkdir()
    config_path = tmp_path / "sensors.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    batches = expand_range("2024-W01..2024-W06", config.time)
    for seed, batch in enumerate(batches):
        write_week(tmp_path / "incoming", batch, seed)
    short = tmp_path / "incoming" / f"{batches[5]}.csv"  # 20 rows < validation.min_rows
    short.write_text("".join(short.read_text().splitlines(keepends=True)[:21]))
    storage = Storage(config.home)
    for batch in batches[:2]:
        land_batch(storage, config, batch, *extract_from_source(config, batch))
    profile_landed(storage, config, batches[:2])
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))

    first = training(batches="2024-W01..2024-W03", dataset="sensors")
    refreshed = monitoring(batch="2024-W04", dataset="sensors").report
    assert refreshed is not None and refreshed.batches == 1  # the page was refreshed by monitoring
    second = training(batches="2024-W01..2024-W04", dataset="sensors")
    monitored = CliRunner().invoke(
        app, ["monitor", "--batch", "2024-W05", "--config", str(config_path)]
    )
    assert monitored.exit_code == 0, monitored.output
    page_line = monitored.output.strip().splitlines()[-1]  # where the refreshed page is
    assert page_line.startswith("report over time: ") and page_line.endswith(".html")
    land_batch(storage, config, batches[5], *extract_from_source(config, batches[5]))
    assert not gate_batch(storage, config, batches[5]).passed  # quarantined

    records = storage.list(catalog.key("batch_records", config))
    assert len(records) == 2
    record = storage.read_json(records[0])
    assert record["model_version"] == first.version
    labelled = record["labelled"]
    assert 0.5 < labelled["roc_auc"] <= 1 and labelled["log_loss"] > 0
    assert 0 < labelled["label_rate"] < 1 and labelled["rows"] == 1500
    assert record["estimated"]["realised"] == pytest.approx(labelled["roc_auc"])
    assert "load" in record["drift"]["psi"]

    out = tmp_path / "shared" / "sensors.html"
    result = CliRunner().invoke(
        app, ["report", "--config", str(config_path), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["path"] == str(out.resolve())
    assert (summary["batches"], summary["quarantines"]) == (2, 1)
    assert summary["decisions"] == summary["costs"] == 2  # two training runs, each costed
    page = out.read_text()
    assert page.encode() == storage.read_bytes(summary["key"])  # the one in the home too
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 4
    versions = {first.version, second.version}
    assert all(f"<td>v{v}</td>" in page for v in versions)
    assert f'<td>{batches[5]}</td><td class="n">1</td>' in page  # the quarantine

    human = CliRunner().invoke(app, ["report", "--config", str(config_path)])
    assert human.exit_code == 0, human.output
    assert human.output.strip().endswith(str(storage.path(summary["key"])))
