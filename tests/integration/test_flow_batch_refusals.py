"""The flows themselves, called directly as a deployment run from the UI calls them (not through
the CLI, which refuses first: tests/unit/test_batch_entry_points.py), refuse a batch id that
is not one of the dataset's periods and move nothing in storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.batches import BatchIdError
from tests.unit.test_batch_entry_points import TRAVERSAL, landed_sensors, snapshot


@pytest.fixture
def sensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)  # the YAML's own home
    return landed_sensors(tmp_path)


@pytest.mark.integration
def test_flows_called_directly_refuse_bad_ids_and_move_nothing(
    prefect_server: None, sensors: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a deployment parameter typed in the UI reaches: the flow itself, not the CLI.
    from flows.inference import inference
    from flows.ingestion import ingestion
    from flows.monitoring import monitoring
    from flows.training import training

    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(sensors.parent))
    before = snapshot(sensors.parent / "state")
    calls = [
        lambda: ingestion(batch=TRAVERSAL, land=False, dataset="sensors"),
        lambda: ingestion(batch="2024-W01/../../x", dataset="sensors"),
        lambda: monitoring(batch="/etc/passwd", dataset="sensors"),
        lambda: inference(batch="2024-W54", dataset="sensors"),
        lambda: training(batches="2024-W01..../x", dataset="sensors"),
    ]
    for call in calls:
        with pytest.raises(BatchIdError):
            call()
    assert snapshot(sensors.parent / "state") == before
