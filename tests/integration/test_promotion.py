"""Promotion you can audit and undo, against a real MLflow registry (SQLite), real training
flows and real Prefect: policy outcomes, duplicates, crash safety, races, rollback, scoring."""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import threading
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import tasks.registry.promotion as promotion_stage
from flows.cli import app
from flows.inference import inference
from flows.promotion import promote, rollback_champion
from flows.training import training
from tasks.core import catalog
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.registry.champion import (
    champion_history,
    champion_moves,
    promote_version,
    record_decision,
)
from tasks.registry.client import (
    CHALLENGER,
    CHAMPION,
    TRAINING_KEY_TAG,
    RegistryError,
    connect,
    version_by_alias,
)
from tasks.registry.evaluate import Decision, Metrics
from tasks.registry.model_store import (
    MODEL_SHA256_TAG,
    ModelIntegrityError,
    load_model,
    log_and_register,
)
from tasks.registry.promotion import (
    PolicyRefusedError,
    RerunSummary,
    RollbackSummary,
    TrainingSummary,
)
from tasks.serve.predict import shadow_report
from tests.conftest import FLIGHTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def champion() -> str:
    found = version_by_alias(load_config(FLIGHTS), CHAMPION)
    assert found is not None
    return found.version


def versions() -> list[str]:
    config = load_config(FLIGHTS)
    found = connect(config).search_model_versions(f"name = '{config.model_name}'")
    return sorted((str(v.version) for v in found), key=int)


def tags(version: str) -> dict[str, str]:
    config = load_config(FLIGHTS)
    return dict(connect(config).get_model_version(config.model_name, version).tags)


@pytest.fixture(scope="module")
def first(prefect_server: None, module_home: Path) -> TrainingSummary:
    result = trained(training(batches="2013-01..2013-03", trials=2, reason="test: first"))
    assert result.promoted and result.version == "1"
    return result


def trained(result: TrainingSummary | RerunSummary) -> TrainingSummary:
    """A run that trained a new version (not a rerun that found one registered)."""
    assert isinstance(result, TrainingSummary), result
    return result


def result_run_id(version: str) -> str:
    config = load_config(FLIGHTS)
    return str(connect(config).get_model_version(config.model_name, version).run_id)


def model_card(version: str) -> str:
    client = connect(load_config(FLIGHTS))
    return Path(client.download_artifacts(result_run_id(version), "model_card.md")).read_text()


def test_identical_training_registers_nothing_new(first: TrainingSummary) -> None:
    again = training(batches="2013-01..2013-03", trials=2, reason="test: duplicate")
    assert isinstance(again, RerunSummary) and again.existing and again.version == "1"
    assert "nothing new registered" in again.reasons[0]
    assert versions() == ["1"]


def test_model_card_is_logged_with_the_version(first: TrainingSummary) -> None:
    config = load_config(FLIGHTS)
    client = connect(config)
    run_id = client.get_model_version(config.model_name, "1").run_id
    card = Path(client.download_artifacts(run_id, "model_card.md")).read_text()
    assert card.startswith("# Model card: flights-late-arrival v1")
    for section in (
        "## Data",
        "## Search",
        "## Holdout 2013-03",
        "## Slices (best minus worst AUC: ",
        "| slice | rows | positive rate | mean score | ECE | AUC |",
        "## Top features (mean |SHAP| on ",
        "## Top features (XGBoost gain)",
        "first model",
    ):
        assert section in card
    assert "carrier=" in card and "origin=" in card
    searched = {Path(item.path).name for item in client.list_artifacts(run_id, "search")}
    assert "optuna_history.png" in searched
    explained = {Path(item.path).name for item in client.list_artifacts(run_id, "explain")}
    assert explained == {"shap_importance.png", "shap_importance.csv"}
    table = pd.read_csv(client.download_artifacts(run_id, "explain/shap_importance.csv"))
    assert set(table["feature"]) <= set(config.features.columns) and len(table) > 3
    assert table["mean_abs_shap"].is_monotonic_decreasing
    slices = pd.read_csv(client.download_artifacts(run_id, "slices/slice_metrics.csv"))
    assert {"auc", "positive_rate", "ece", "rows"} <= set(slices.columns) and len(slices) > 2
    gap = client.get_run(run_id).data.metrics["holdout_slice_auc_gap"]
    assert gap == pytest.approx(slices["auc"].max() - slices["auc"].min())


def test_better_challenger_is_promoted_with_its_evidence(
    first: TrainingSummary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = trained(training(batches="2013-01..2013-04", trials=2, reason="test: more data"))
    # The search's and SHAP's PNGs are logged to the run; their temporary folders are gone.
    assert not list(scratch.glob("perennial-study-*")) + list(scratch.glob("perennial-explain-*"))
    assert result.promoted, result.reasons
    assert champion() == result.version
    # v1 was refit on March, its holdout: both models saw January-March, so the holdout
    # compares recipes, and the challenger's refit on April is what it adds.
    assert "its refit adds the holdout" in result.reasons[0], result.reasons
    assert result.interval is not None
    low, high = result.interval
    assert low < high
    assert result.trained_on == ["2013-01", "2013-02", "2013-03", "2013-04"]
    recorded = tags(result.version)
    assert recorded["perennial.trained_on"] == "2013-01,2013-02,2013-03,2013-04"
    assert recorded["perennial.judged_on"] == "2013-04"
    assert tags("1")["perennial.trained_on"] == "2013-01,2013-02,2013-03"
    params = connect(load_config(FLIGHTS)).get_run(result_run_id(result.version)).data.params
    assert int(params["n_estimators"]) > int(params["judged_rounds"])  # scaled to April's rows
    card = model_card(result.version)
    assert "**the registered model is trained on 2013-01 to 2013-04**" in card
    assert "judged on holdout 2013-04" in card
    status = CliRunner().invoke(app, ["status", "--json"])
    shown = json.loads(status.stdout)["champion"]
    assert shown["trained_on"][-1] == shown["judged_on"] == "2013-04"
    assert recorded["perennial.replaced_version"] == "1"
    assert recorded["perennial.decision"] == "promoted"
    numbers = json.loads(recorded["perennial.decision_numbers"])
    assert result.champion is not None
    assert numbers["champion"]["roc_auc"] == pytest.approx(result.champion.roc_auc)


def test_worse_challenger_is_not_promoted_and_says_why(
    first: TrainingSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = champion()
    # A deliberately weak model: stumps, a tiny learning rate, few rounds. (The champion's
    # parameters lie outside this space, so they are not tried first: see typed_warm_start.)
    monkeypatch.setenv("PERENNIAL_HPO__MAX_ROUNDS", "10")
    monkeypatch.setenv(
        "PERENNIAL_HPO__SEARCH_SPACE",
        '{"max_depth": {"low": 1, "high": 1}, "learning_rate": {"low": 0.01, "high": 0.02}}',
    )
    result = trained(training(batches="2013-02..2013-05", trials=2, reason="test: weak model"))
    assert not result.promoted
    assert champion() == before
    assert version_by_alias(load_config(FLIGHTS), CHALLENGER).version == result.version  # type: ignore[union-attr]
    assert result.champion is not None
    assert result.challenger.roc_auc < result.champion.roc_auc
    assert any("beyond the noise" in b for b in result.blockers), result.blockers
    assert next(b for b in result.blockers if "beyond the noise" in b) in result.reasons


def test_guard_regression_blocks(first: TrainingSummary, monkeypatch: pytest.MonkeyPatch) -> None:
    before = champion()
    # Any gain passes the primary check, but no worsening of log loss at all is tolerated.
    monkeypatch.setenv("PERENNIAL_PROMOTION__MIN_IMPROVEMENT", "0")
    monkeypatch.setenv("PERENNIAL_PROMOTION__GUARD_TOLERANCE", '{"log_loss": -1.0}')
    monkeypatch.setenv("PERENNIAL_HPO__SEED", "11")
    result = trained(training(batches="2013-02..2013-05", trials=2, reason="test: guard"))
    assert not result.promoted
    assert any(r.startswith("guard log_loss worse by") for r in result.reasons)
    assert [b for b in result.blockers if "log_loss" in b] == [
        r for r in result.reasons if r.startswith("guard log_loss worse by")
    ]
    assert champion() == before


def test_crash_after_registration_keeps_the_champion_and_a_rerun_finishes(
    first: TrainingSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, count = champion(), len(versions())

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("injected crash between registration and the alias move")

    with monkeypatch.context() as patch:
        patch.setattr(promotion_stage, "record_decision", crash)
        with pytest.raises(RuntimeError, match="injected crash"):
            training(batches="2013-01..2013-05", trials=2, reason="test: crash")
    assert champion() == before
    assert len(versions()) == count + 1
    pending = versions()[-1]
    assert "perennial.decision" not in tags(pending)
    # What the version needs was written before the alias would have moved.
    home = Path(os.environ["PERENNIAL_HOME"])
    assert (home / catalog.key("reference", load_config(FLIGHTS), version=pending)).is_file()

    rerun = training(batches="2013-01..2013-05", trials=2, reason="test: rerun after crash")
    assert rerun.version == pending and len(versions()) == count + 1
    assert "perennial.decision" in tags(pending)


def test_racing_promotions_leave_one_champion_and_both_decisions(first: TrainingSummary) -> None:
    config = load_config(FLIGHTS)
    current = champion()
    racers = [v for v in versions() if v != current][:2]
    numbers = Metrics.binary(0.9, 0.3, 0.2, 0.2, 100, True, 0.8, "carrier=UA")
    outcomes: dict[str, Decision] = {}

    def race(version: str) -> None:
        outcomes[version] = record_decision(
            config, version, Decision(True, ["test: wins"]), numbers, numbers, current, "race"
        )

    threads = [threading.Thread(target=race, args=(v,)) for v in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [v for v, d in outcomes.items() if d.promote]
    assert len(winners) == 1 and champion() == winners[0]
    loser = next(v for v in racers if v not in winners)
    assert tags(loser)["perennial.decision"] == "rejected"
    assert "champion moved" in tags(loser)["perennial.decision_reasons"]
    assert tags(winners[0])["perennial.decision"] == "promoted"


def history() -> list[str]:
    config = load_config(FLIGHTS)
    return champion_history(connect(config), config.model_name)


def test_rollback_restores_the_previous_champion_and_records_it(first: TrainingSummary) -> None:
    current = champion()
    assert history()[-1] == current
    replaced = history()[-2]
    result = rollback_champion(reason="test: rollback")
    assert result == RollbackSummary("flights-late-arrival", champion=replaced, demoted=current)
    assert champion() == replaced
    assert "champion returned to" in tags(current)["perennial.rolled_back"]
    assert tags(replaced)["perennial.restored_from"] == current


def test_rollback_refuses_when_there_is_nothing_to_go_back_to(first: TrainingSummary) -> None:
    for _ in range(len(history()) - 1):  # unwind to the first champion
        rollback_champion(reason="test: unwind")
    assert champion() == "1" and history() == ["1"]
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback_champion(reason="test: one too many")


def test_manual_promotion_checks_the_policy_and_force_needs_a_reason(
    first: TrainingSummary, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = champion()
    other = next(v for v in versions() if v != current)
    runner = CliRunner()
    forced_without_reason = runner.invoke(app, ["promote", "--version", other, "--force"])
    assert forced_without_reason.exit_code == 2
    # No version gains a whole AUC point: the policy must refuse, and only force moves the alias.
    monkeypatch.setenv("PERENNIAL_PROMOTION__MIN_IMPROVEMENT", "1.0")
    with pytest.raises(PolicyRefusedError, match=rf"policy refuses v{other} .*< required \+1\.0"):
        promote(version=other, reason="test: manual")
    assert champion() == current
    result = promote(version=other, reason="test: forced", force=True)
    assert result.forced and result.previous == current
    assert champion() == other
    assert tags(other)["perennial.replaced_version"] == current
    assert "perennial.manual_promotion" in tags(other)


def test_predictions_carry_the_model_version_and_shadow_scores(
    first: TrainingSummary, module_home: Path
) -> None:
    config, storage = load_config(FLIGHTS), Storage(module_home)
    other = next(v for v in versions() if v != champion())
    connect(config).set_registered_model_alias(config.model_name, CHALLENGER, other)
    result = inference(batch="2013-06")
    scored = pd.read_parquet(module_home / catalog.key("predictions", config, batch="2013-06"))
    assert len(scored) == result.rows > 20_000
    assert (scored["champion_version"] == champion()).all()
    assert scored["champion_score"].between(0, 1).all()
    challenger = version_by_alias(config, CHALLENGER).version  # type: ignore[union-attr]
    assert (scored["challenger_version"] == challenger).all()
    report = shadow_report(storage, config, "2013-06")
    assert report.champion is not None and report.champion.version == champion()
    assert report.challenger is not None and 0.5 < report.challenger.roc_auc < 0.9


def test_the_monitor_compares_shadow_scores_once_labels_are_in(
    first: TrainingSummary, module_home: Path
) -> None:
    # Follows the scoring test above: 2013-06 was scored by champion and challenger.
    config, storage = load_config(FLIGHTS), Storage(module_home)
    report = shadow_report(storage, config, "2013-06")
    assert report.champion is not None and report.challenger is not None
    runner = CliRunner()
    monitored = runner.invoke(app, ["monitor", "--batch", "2013-06", "--json"])
    assert monitored.exit_code == 0, monitored.output
    shadow = json.loads(monitored.stdout)["shadow"]
    assert shadow["champion"]["version"] == champion()
    assert shadow["challenger"]["version"] == report.challenger.version != champion()
    assert shadow["rows"] == report.rows > 20_000
    expected_gain = report.challenger.roc_auc - report.champion.roc_auc
    assert shadow["gain"]["roc_auc"] == pytest.approx(expected_gain)
    human = runner.invoke(app, ["monitor", "--batch", "2013-06"])
    assert f"challenger v{shadow['challenger']['version']} AUC" in human.stdout
    # A batch nobody scored in shadow has no comparison.
    unscored = runner.invoke(app, ["monitor", "--batch", "2013-05", "--json"])
    assert unscored.exit_code == 0, unscored.output
    assert json.loads(unscored.stdout)["shadow"] is None


def test_a_manual_promotion_checked_against_a_stale_champion_is_refused_unless_forced(
    first: TrainingSummary,
) -> None:
    config = load_config(FLIGHTS)
    current = champion()
    other = next(v for v in versions() if v != current)
    stale = next(v for v in versions() if v not in (current, other))
    with pytest.raises(RegistryError, match=f"champion moved to v{current} while v{other}"):
        promote_version(config, other, "test", ["test: stale"], compared_with=stale)
    assert champion() == current
    previous = promote_version(
        config, other, "test", ["test: stale but forced"], compared_with=stale, forced=True
    )
    assert previous == current and champion() == other
    assert "(forced)" in tags(other)["perennial.manual_promotion"]


def test_every_move_of_the_champion_is_in_the_audit_log_in_order(first: TrainingSummary) -> None:
    config = load_config(FLIGHTS)
    moves = champion_moves(connect(config), config.model_name)
    assert moves[0]["from"] is None and moves[0]["action"] == "train"
    assert {m["action"] for m in moves} == {"train", "promote", "rollback"}
    for earlier, later in itertools.pairwise(moves):
        assert later["from"] == earlier["to"]
        assert later["at"] >= earlier["at"] and later["by"]
    assert moves[-1]["to"] == champion() == history()[-1]


def test_a_tampered_model_artifact_is_refused_naming_the_version(
    first: TrainingSummary, module_home: Path
) -> None:
    config = load_config(FLIGHTS)
    version = champion()
    found = connect(config).get_model_version(config.model_name, version)
    assert len(found.tags[MODEL_SHA256_TAG]) == 64
    assert load_model(config, version) is not None  # the artifact as registered loads
    model_id = found.model_id or found.source.removeprefix("models:/")
    [booster] = list(module_home.glob(f"mlartifacts/**/{model_id}/artifacts/artifacts/booster.ubj"))
    original = booster.read_bytes()
    try:
        booster.write_bytes(original + b"\n")
        with pytest.raises(ModelIntegrityError, match=f"v{version} of flights-late-arrival"):
            load_model(config, version)
        refused = CliRunner().invoke(app, ["predict", "--batch", "2013-06"])
        assert refused.exit_code == 1 and "tampered" in refused.output
    finally:
        booster.write_bytes(original)


def test_registration_checks_the_training_key_again_under_the_lock(first: TrainingSummary) -> None:
    # Two machines that trained the same thing: the second registers nothing.
    config = load_config(FLIGHTS)
    existing = versions()[0]
    key = tags(existing)["perennial.training_key"]
    count = len(versions())
    again = log_and_register(config, None, pd.DataFrame(), {}, {}, {TRAINING_KEY_TAG: key}, {})
    assert again.version == existing and not again.created
    assert len(versions()) == count
