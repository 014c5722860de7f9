"""`perennial status` reads a SQLite registry with sqlite3 (no `import mlflow`): on one real
MLflow registry the reader (tasks/registry/reader.py) must return exactly what MLflow's own
client returns, so the registry stays the one source of truth. Checked on the reader itself,
since the CLI falls back to MLflow's client on any schema error the reader raises."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from flows.cli.registry import RegistryStatus, registry_status, registry_status_by_mlflow, status_of
from tasks.core.config import load_config
from tasks.core.results import jsonable
from tasks.registry import champion, cost
from tasks.registry import client as registry_client
from tasks.registry import reader as registry_reader
from tests.conftest import FLIGHTS

pytestmark = [pytest.mark.integration]


def build_registry(config: Any, artifacts: Path) -> None:
    """Four runs (one deleted, one without a cost), three versions (one deleted), two aliases."""
    from mlflow import MlflowClient

    client = MlflowClient(config.tracking_uri, config.tracking_uri)
    experiment = client.create_experiment(config.dataset, artifact_location=artifacts.as_uri())
    runs = []
    for number in range(4):
        run = client.create_run(experiment, start_time=1_700_000_000_000 + number * 1000)
        runs.append(run.info.run_id)
        client.log_metric(run.info.run_id, "holdout_roc_auc", 0.70 + number / 100)
        client.log_metric(run.info.run_id, "holdout_roc_auc", 0.60 + number / 100)  # latest
        if number != 2:
            client.log_metric(run.info.run_id, "cost_usd", 0.001 * (number + 1))
            client.log_metric(run.info.run_id, "cost_wall_seconds", 10.0 + number)
            client.log_metric(run.info.run_id, "cost_tune_wall_seconds", 5.0)
            client.log_metric(run.info.run_id, "cost_peak_rss_mb", math.nan)
    client.delete_run(runs[3])
    client.create_registered_model(config.model_name)
    for number, run_id in enumerate(runs[:3]):
        version = client.create_model_version(
            config.model_name, str(artifacts / f"model{number}"), run_id
        )
        client.set_model_version_tag(config.model_name, version.version, "perennial.batches", "b")
        if number < 2:
            reasons = json.dumps([f"reason {number}"])
            client.set_model_version_tag(
                config.model_name, version.version, "perennial.decision", "promoted"
            )
            client.set_model_version_tag(
                config.model_name, version.version, "perennial.decision_reasons", reasons
            )
    # `perennial forget` marked versions 1 and 3 (3, deleted, is listed by neither reader).
    erased = json.dumps(
        [{"erasure": "0123abcd", "at": "2026-12-08T00:00:00", "batches": ["2013-01"]}]
    )
    for version in ("1", "3"):
        client.set_model_version_tag(config.model_name, version, "perennial.erased", erased)
    client.set_registered_model_alias(config.model_name, "champion", "1")
    client.set_registered_model_alias(config.model_name, "challenger", "2")
    client.delete_model_version(config.model_name, "3")


def comparable(found: RegistryStatus) -> str:
    return json.dumps(jsonable(found), sort_keys=True, default=str)  # NaN == NaN as text


def test_status_read_with_sqlite_is_what_mlflow_returns(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(FLIGHTS)
    empty = registry_reader.status_snapshot(config.tracking_uri, config.model_name, "flights")
    assert empty == {
        "champion": None, "challenger": None, "decisions": [], "costs": [], "erased": []
    }  # fmt: skip
    build_registry(config, tmp_path / "artifacts")

    # The reader itself: a query it gets wrong raises here instead of falling back to MLflow.
    read = registry_reader.status_snapshot(config.tracking_uri, config.model_name, "flights")
    assert read["champion"]["version"] == "1" and read["challenger"]["version"] == "2"
    assert read["champion"]["metrics"]["holdout_roc_auc"] == pytest.approx(0.60)
    assert read["champion"]["tags"]["perennial.decision"] == "promoted"
    assert [d["version"] for d in read["decisions"]] == ["2", "1"]
    assert [(e["version"], e["erasures"][0]["batches"]) for e in read["erased"]] == [
        ("1", ["2013-01"])
    ]
    assert len(read["costs"]) == 2  # the deleted run and the run without a cost are left out
    by_mlflow = status_of(config.model_name, registry_status_by_mlflow(config))
    assert comparable(status_of(config.model_name, read)) == comparable(by_mlflow)

    # `perennial status` answers from that reader: its fallback through MLflow is not taken.
    def fallback(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("status fell back to MLflow's client on a SQLite registry")

    monkeypatch.setattr(registry_client, "version_by_alias", fallback)
    monkeypatch.setattr(champion, "recent_decisions", fallback)
    monkeypatch.setattr(cost, "recent_costs", fallback)
    shown = registry_status(config)
    assert shown.champion is not None and shown.champion.version == "1"
    assert comparable(shown) == comparable(by_mlflow)


def test_the_reader_knows_the_cost_totals_of_the_cost_module() -> None:
    assert registry_reader.COST_TOTALS == cost.TOTALS
    assert registry_reader.COST_PREFIX == cost.METRIC_PREFIX


def test_a_tracking_server_is_read_through_mlflow() -> None:
    with pytest.raises(registry_reader.Unreadable):
        registry_reader.status_snapshot("http://127.0.0.1:5000", "m", "e")
