"""The training flow for real (Prefect, GE, Optuna, XGBoost, MLflow on SQLite), as a scenario:
first champion, a challenger that does not win, and a quarantined batch that training refuses."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from flows.monitoring import monitoring
from flows.training import training
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.ingest import NotLandedError, land_batch
from tasks.data.raw_files import read_raw
from tasks.data.source import extract_from_source
from tasks.data.validate import GateRefusedError
from tasks.registry.client import CHALLENGER, CHAMPION, connect, version_by_alias
from tasks.registry.promotion import TrainingSummary
from tests.conftest import FLIGHTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LINEAGE = (
    "perennial.batches",
    "perennial.batch_hashes",
    "perennial.ge_suite",
    "perennial.ge_result",
    "perennial.config_hash",
    "perennial.git_sha",
    "perennial.git_dirty",
    "perennial.optuna_study",
    "perennial.optuna_trial",
    "perennial.seed",
    "perennial.package_versions",
    "perennial.prefect_flow_run_id",
    "perennial.decision",
    "perennial.decision_reasons",
)


@pytest.fixture(scope="module")
def first_run(prefect_server: None, module_home: Path) -> TrainingSummary:
    result = training(batches="2013-01..2013-03", trials=2, reason="test: first champion")
    assert isinstance(result, TrainingSummary), result
    return result


def test_first_model_becomes_champion_with_lineage(first_run: TrainingSummary) -> None:
    config = load_config(FLIGHTS)
    assert first_run.promoted and first_run.version == "1"
    champion = version_by_alias(config, CHAMPION)
    assert champion is not None and champion.version == "1"
    tags = connect(config).get_model_version(config.model_name, "1").tags
    missing = [key for key in LINEAGE if key not in tags]
    assert not missing
    assert tags["perennial.batches"] == "2013-01,2013-02,2013-03"
    assert set(json.loads(tags["perennial.batch_hashes"])) == {"2013-01", "2013-02", "2013-03"}
    assert tags["perennial.prefect_flow_run_id"] not in ("", "none")
    assert tags["perennial.decision"] == "promoted"
    assert 0.6 < first_run.challenger.roc_auc < 0.9  # no leak: a leaking model scores > 0.9


def test_challenger_that_does_not_beat_the_champion_leaves_the_alias(
    first_run: TrainingSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERENNIAL_PROMOTION__MIN_IMPROVEMENT", "0.5")
    monkeypatch.setenv("PERENNIAL_HPO__SEED", "7")  # a different study: a genuinely new model
    result = training(batches="2013-01..2013-03", trials=2, reason="test: weak challenger")
    config = load_config(FLIGHTS)
    assert not result.promoted
    assert any("< required +0.5" in reason for reason in result.reasons)
    assert version_by_alias(config, CHAMPION).version == "1"  # type: ignore[union-attr]
    assert version_by_alias(config, CHALLENGER).version == result.version  # type: ignore[union-attr]
    tags = connect(config).get_model_version(config.model_name, result.version).tags
    assert tags["perennial.decision"] == "rejected"
    assert tags["perennial.compared_with"] == "1"


def test_quarantined_batch_is_refused_and_the_champion_stays(
    first_run: TrainingSummary, module_home: Path
) -> None:
    config, storage = load_config(FLIGHTS), Storage(module_home)
    data, ext, _ = extract_from_source(config, "2013-04")
    frame = read_raw(data, ext).drop(columns=["dest"])
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    land_batch(storage, config, "2013-04", buffer.getvalue().encode(), ".csv", "corrupt test file")

    with pytest.raises(GateRefusedError, match=r"2013-04.*quarantine/flights/2013-04.reason.json"):
        training(batches="2013-01..2013-04", trials=2, reason="test: corrupt batch")

    assert storage.exists("quarantine/flights/2013-04.reason.json")
    assert not storage.exists("validated/flights/2013-04.parquet")
    assert version_by_alias(config, CHAMPION).version == "1"  # type: ignore[union-attr]


def test_reingesting_the_same_batch_is_a_no_op(
    first_run: TrainingSummary, module_home: Path
) -> None:
    config, storage = load_config(FLIGHTS), Storage(module_home)
    before = storage.read_json("landing/flights/2013-02.landed.json")
    data, ext, source = extract_from_source(config, "2013-02")
    assert land_batch(storage, config, "2013-02", data, ext, source).status == "unchanged"
    assert storage.read_json("landing/flights/2013-02.landed.json") == before


def test_monitoring_with_nothing_landed_is_refused_by_the_ingest_stage(
    prefect_server: None, home: Path
) -> None:
    with pytest.raises(NotLandedError, match="no landed batch of flights: ingest one"):
        monitoring()
