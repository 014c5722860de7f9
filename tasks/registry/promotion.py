"""Promotion: what a comparison decides, written where people read it (the version's tags, its
model card, a Prefect artifact) and the alias moved last; manual promotions and rollbacks; and
the summary a training run returns.

Everything a version needs is written before the alias moves: the drift reference profile (the
monitor compares later batches with what the model learnt) and the model card. A crash in
between leaves the old champion with all it needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.core import catalog
from tasks.core.artifacts import artifact_key
from tasks.core.config import PerennialConfig
from tasks.core.run_logging import run_logger
from tasks.core.storage import open_storage
from tasks.data.features import Datasets, features_and_label, load_validated
from tasks.data.ingest import landed_batches
from tasks.data.verdict import GateResult
from tasks.learn.explain import Explanation
from tasks.learn.train import ServedModel, top_features
from tasks.learn.tune import TuneResult
from tasks.registry.champion import promote_version, record_decision, rollback
from tasks.registry.client import (
    CHAMPION,
    RegistryError,
    VersionInfo,
    log_text,
    version_by_alias,
    version_info,
)
from tasks.registry.cost import RunCost
from tasks.registry.evaluate import Comparison, Decision, Metrics, compare
from tasks.registry.lineage import batches_seen
from tasks.registry.metrics import one_per_row, scores
from tasks.registry.model_card import CardFacts, render
from tasks.registry.model_store import load_model
from tasks.registry.registration import DECISION_TAG, TrainingRun


class PolicyRefusedError(RuntimeError):
    """A manual promotion that the policy refuses and that was not forced."""


def mover(how: str, reason: str) -> str:
    """Who moved an alias, as the moves log records it: the command and its flow run."""
    return f"{how} (flow run {flow_run.get_id() or 'local'}): {reason}"


# -- a training run's decision -----------------------------------------------------------------


def card_facts(
    registered: VersionInfo,
    run: TrainingRun,
    data: Datasets,
    gate: dict[str, GateResult],
    tuned: TuneResult,
    served: ServedModel,
    champion: VersionInfo | None,
    explanation: Explanation | None = None,
    cost: RunCost | None = None,
) -> CardFacts:
    return CardFacts(
        version=registered.version,
        batches=list(gate),
        holdout=data.split.holdout,
        validation=data.split.validation,
        batch_hashes=run.batch_hashes,
        rows_fit=len(data.x_fit),
        rows_holdout=len(data.x_holdout),
        gate={b: r.headline() for b, r in gate.items()},
        study=tuned.study_name,
        trials_total=tuned.trials_total,
        trials_pruned=tuned.trials_pruned,
        best_trial=tuned.best_trial,
        best_value=tuned.best_value,
        best_params=tuned.best_params,
        best_rounds=tuned.best_rounds,
        champion_version=champion.version if champion else None,
        top_features=top_features(served.model),
        shap_importance=explanation.top() if explanation else [],
        shap_rows=explanation.rows if explanation else 0,
        cost=cost,
        trained_on=served.trained_on,
        rows_served=served.rows,
        served_rounds=served.rounds,
    )


@task(name="promote-or-keep", cache_policy=NO_CACHE)
def decide_task(
    config: PerennialConfig,
    registered: VersionInfo,
    comparison: Comparison,
    facts: CardFacts,
    reason: str,
) -> Decision:
    """Log the model card, record the decision and move the alias it earned (last). If the
    champion moved under us the recorded decision differs, and the card is written again."""
    card = render(config, facts, comparison)
    log_text(config, registered.run_id, card, "model_card.md")
    decision = record_decision(
        config,
        registered.version,
        comparison.decision,
        comparison.challenger,
        comparison.champion,
        facts.champion_version,
        f"training flow run {flow_run.get_id() or 'local'}: {reason}",
    )
    if decision != comparison.decision:  # the champion moved under us: the card says so
        comparison.decision = decision
        card = render(config, facts, comparison)
        log_text(config, registered.run_id, card, "model_card.md")
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        markdown=card,
        key=artifact_key(f"{config.dataset}-model-card"),
        description=f"{config.model_name} v{registered.version}: {decision.summary()}",
    )
    run_logger().info("v%s: %s", registered.version, decision.summary())
    return decision


@task(name="fit-scores", cache_policy=NO_CACHE)
def fit_scores_task(model: Any, data: Datasets) -> np.ndarray:
    """The model's scores on its own training rows (`scores`, by the model's task): the drift
    reference's score profile, one number a row (a multiclass model's: the probability of the
    class it chose)."""
    return one_per_row(scores(model, data.x_fit, model.task))


@dataclass
class RowCounts:
    train: int
    holdout: int
    served: int  # rows of the model registered (with the holdout, when refit on it)


@dataclass
class TrialCounts:
    total: int  # finished trials the study holds
    run: int  # run by this training
    pruned: int


@dataclass
class TrainingSummary:
    """What a training run returns (the CLI prints it, the demo tabulates it): the version it
    registered, the decision and its reasons (`blockers`: those that kept the champion), and
    the numbers behind it."""

    model: str
    version: str
    existing: bool  # False: `RerunSummary` is the run that found its training registered
    promoted: bool
    reasons: list[str]
    blockers: list[str]
    champion_version: str | None  # after the decision
    holdout: str
    trained_on: list[str]
    rows: RowCounts
    challenger: Metrics
    champion: Metrics | None  # on the same holdout; None without a champion
    interval: tuple[float, float] | None  # bootstrap interval of the primary metric's gain
    best_params: dict[str, Any]
    study: str
    trials: TrialCounts


@dataclass
class RerunSummary:
    """What a training run returns when an identical training was registered (and decided)
    before: that version, and the decision its tags hold. Its numbers may be missing: a
    concurrent run may have registered it and not recorded its decision yet."""

    model: str
    version: str
    existing: bool  # True
    promoted: bool
    reasons: list[str]
    champion_version: str | None
    holdout: str
    trained_on: list[str]
    challenger: Metrics | None
    champion: Metrics | None


def training_summary(
    config: PerennialConfig,
    registered: VersionInfo,
    decision: Decision,
    comparison: Comparison,
    data: Datasets,
    tuned: TuneResult,
    served: ServedModel,
) -> TrainingSummary:
    """What a training run returns (the CLI prints it, the demo tabulates it)."""
    current = version_by_alias(config, CHAMPION)
    return TrainingSummary(
        model=config.model_name,
        version=registered.version,
        existing=False,
        promoted=decision.promote,
        reasons=decision.reasons,
        blockers=decision.blockers,
        champion_version=current.version if current else None,
        holdout=data.split.holdout,
        trained_on=served.trained_on,
        rows=RowCounts(train=len(data.x_fit), holdout=len(data.x_holdout), served=served.rows),
        challenger=comparison.challenger,
        champion=comparison.champion,
        interval=decision.interval,
        best_params=tuned.best_params,
        study=tuned.study_name,
        trials=TrialCounts(
            total=tuned.trials_total, run=tuned.trials_run, pruned=tuned.trials_pruned
        ),
    )


def existing_summary(config: PerennialConfig, found: VersionInfo) -> RerunSummary:
    """The summary of a run whose identical training was registered (and decided) before."""
    numbers = json.loads(found.tags.get("perennial.decision_numbers", "{}"))
    champion = version_by_alias(config, CHAMPION)
    return RerunSummary(
        model=config.model_name,
        version=found.version,
        existing=True,
        promoted=found.tags.get(DECISION_TAG) == "promoted",
        reasons=[
            f"identical training already registered v{found.version}: nothing new registered",
            *json.loads(found.tags.get("perennial.decision_reasons", "[]")),
        ],
        champion_version=champion.version if champion else None,
        holdout=found.tags.get("perennial.batches", "").split(",")[-1],
        trained_on=batches_seen(found.tags),
        challenger=Metrics.recorded(numbers.get("challenger")),
        champion=Metrics.recorded(numbers.get("champion")),
    )


@task(name="report-existing-version", cache_policy=NO_CACHE)
def existing_summary_task(config: PerennialConfig, found: VersionInfo) -> RerunSummary:
    run_logger().info("identical training already registered v%s; nothing new", found.version)
    return existing_summary(config, found)


# -- manual moves ------------------------------------------------------------------------------


@dataclass
class PromotionSummary:
    """What `perennial promote` did: the new champion, the one it replaced, and the policy's
    checks on the holdout (`forced`: the policy refused and `--force` overrode it)."""

    model: str
    champion: str
    previous: str | None
    forced: bool
    holdout: str
    checks: list[str]


@dataclass
class RollbackSummary:
    """What `perennial rollback` did: the champion restored and the one demoted."""

    model: str
    champion: str
    demoted: str


@task(name="check-against-champion", cache_policy=NO_CACHE)
def check_manual_promotion_task(
    config: PerennialConfig, version: str
) -> tuple[Comparison, str, str | None]:
    """Compare `version` with the champion on the newest validated batch that neither was
    trained on: (comparison, that batch, the champion version compared with). When every
    validated batch was seen by one of them, on the newest, with a blocker that says so (its
    numbers there are in-sample: only `--force` promotes then)."""
    storage = open_storage(config.home)
    validated = [
        b
        for b in landed_batches(storage, config)
        if storage.exists(catalog.key("validated", config, batch=b))
    ]
    if not validated:
        raise RegistryError(f"no validated batch of {config.dataset} to check v{version} on")
    champion = version_by_alias(config, CHAMPION)
    candidate = version_info(config, version)
    seen = {b: f"v{candidate.version}" for b in batches_seen(candidate.tags)}
    if champion:
        seen |= {b: f"champion v{champion.version}" for b in batches_seen(champion.tags)}
    unseen = [b for b in validated if b not in seen]
    holdout = unseen[-1] if unseen else validated[-1]
    x, y = features_and_label(load_validated(storage, config, [holdout]), config)
    comparison = compare(
        load_model(config, version=version),
        load_model(config, champion.version) if champion else None,
        x,
        y,
        config.primary_metric,
        config.guard_metrics,
        config.promotion,
        config.hpo.seed,
        task=config.target.task,
        unit=config.target.unit,
    )  # no naive baseline here: the version's training rows are not at hand
    if holdout in seen:
        blocker = (
            f"every validated batch was trained on by one of the two ({holdout}: "
            f"{seen[holdout]}): the comparison is in-sample"
        )
        decision = comparison.decision
        decision.promote = False
        decision.reasons.insert(0, blocker)
        decision.blockers.insert(0, blocker)
    return comparison, holdout, champion.version if champion else None


@task(name="promote-by-hand", cache_policy=NO_CACHE)
def promote_by_hand_task(
    config: PerennialConfig,
    version: str,
    comparison: Comparison,
    holdout: str,
    compared_with: str | None,
    reason: str,
    force: bool,
) -> PromotionSummary:
    """Make `version` champion if the policy agrees, or if `force` (with a reason) overrides
    it; else `PolicyRefusedError` naming the failed checks."""
    checks = comparison.decision.reasons
    if not comparison.decision.promote and not force:
        raise PolicyRefusedError(
            f"policy refuses v{version} on holdout {holdout}: "
            + "; ".join(checks)
            + " (use --force with a --reason to override)"
        )
    forced = not comparison.decision.promote
    why = [f"manual promotion{' FORCED past the policy' if forced else ''}: {reason}", *checks]
    previous = promote_version(
        config,
        version,
        mover("perennial promote", reason),
        why,
        compared_with=compared_with,
        forced=force,
    )
    return PromotionSummary(config.model_name, version, previous, forced, holdout, checks)


@task(name="roll-back", cache_policy=NO_CACHE)
def rollback_task(config: PerennialConfig, reason: str) -> RollbackSummary:
    """Point `champion` back to the version the current champion replaced."""
    demoted, restored = rollback(config, mover("perennial rollback", reason))
    return RollbackSummary(model=config.model_name, champion=restored, demoted=demoted)
