"""The pipeline's state as `perennial serve` shows it on /metrics, read from monitoring records and
quarantine reasons in real local storage (the registry faked): the champion's realized metric is
its own newest labelled batch's, the estimate the newest monitored batch's, and every verdict's
series is there from the start. A failed read keeps the last state and is counted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from tasks.core import catalog
from tasks.core.config import PerennialConfig
from tasks.core.storage import Storage
from tasks.watch.pipeline_state import PipelineState, PipelineWatcher, read_pipeline_state
from tasks.watch.report import save_batch_record
from tests.unit.test_serve_refusals import make_config


def record(batch: str, version: str, auc: float | None, estimated: float, status: str) -> Any:
    return {
        "batch": batch,
        "model_version": version,
        "recorded_at": "2024-03-01T00:00:00+00:00",
        "rows": 100,
        "labelled": None if auc is None else {"roc_auc": auc, "rows": 100},
        "estimated": {"estimated_auc": estimated},
        "drift": {"status": status, "max_psi": 0.1, "psi": {}, "drifted_features": []},
    }


def stored(tmp_path: Path) -> tuple[PerennialConfig, Storage]:
    config = make_config(tmp_path)
    storage = Storage(config.home)
    for item in (
        record("2024-W01", "1", 0.81, 0.80, "ok"),
        record("2024-W02", "2", 0.77, 0.79, "alert"),  # the champion's newest labelled batch
        record("2024-W03", "1", 0.90, 0.85, "ok"),  # newer, but another version's
        record("2024-W04", "2", None, 0.74, "warn"),  # newest: no labels yet
    ):
        assert save_batch_record(storage, config, item)
    for name in ("2024-W02.reason.json", "2024-W02.r2.reason.json"):
        storage.write_bytes(f"{catalog.key('quarantine_folder', config)}/{name}", b"{}")
    return config, storage


def test_the_state_reads_the_champions_own_metric_and_the_newest_estimate(
    tmp_path: Path,
) -> None:
    config, storage = stored(tmp_path)
    state = read_pipeline_state(config, storage, registry=lambda _config: ("2", 1.7e9))
    assert state == PipelineState(
        metric="roc_auc",
        champion_version="2",
        last_training=1.7e9,
        champion_metric=0.77,
        estimated_metric=0.74,
        gate_refusals=2,
        monitored={"ok": 2, "warn": 1, "alert": 1},
    )
    (tmp_path / "new").mkdir()
    fresh = make_config(tmp_path / "new")
    empty = read_pipeline_state(fresh, Storage(fresh.home), registry=lambda _config: (None, None))
    assert empty.champion_version is None and empty.champion_metric is None
    assert empty.monitored == {"ok": 0, "warn": 0, "alert": 0}


def test_the_watcher_exposes_the_state_and_counts_failed_reads(tmp_path: Path) -> None:
    config, storage = stored(tmp_path)
    reads: list[str] = []

    def reader(config: PerennialConfig, storage: Storage) -> PipelineState:
        reads.append("read")
        if len(reads) > 1:
            raise ConnectionError("registry down")
        return read_pipeline_state(config, storage, registry=lambda _config: ("2", 1.7e9))

    watcher = PipelineWatcher(config, storage, reader)
    registry = CollectorRegistry()
    registry.register(watcher)
    assert "perennial_champion_version" not in generate_latest(registry).decode()  # not read yet
    watcher.refresh()
    watcher.refresh()  # fails: the last state stays
    text = generate_latest(registry).decode()
    assert "perennial_champion_version 2.0" in text
    assert 'perennial_champion_metric{metric="roc_auc"} 0.77' in text
    assert 'perennial_batch_estimated_metric{metric="roc_auc"} 0.74' in text
    assert "perennial_last_training_timestamp_seconds 1.7e+09" in text
    assert "perennial_gate_refusals_total 2.0" in text
    assert 'perennial_monitored_batches{status="alert"} 1.0' in text
    assert "perennial_pipeline_state_failures_total 1.0" in text
