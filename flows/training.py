"""Training: ingest -> validate -> features -> tune -> train -> evaluate -> register/promote.

Runs on a schedule, from the Prefect UI, on a drift event, or from `perennial train`. A rerun
on the same data, config, seed and trials registers nothing new: it reports the version the
first run registered (and finishes its decision if a crash cut that run short).
"""

from __future__ import annotations

import json
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from tasks.batches import expand_range
from tasks.config import PerennialConfig, artifact_key, dataset_config
from tasks.evaluate import compare_task
from tasks.features import build_datasets_task
from tasks.ingest import land_batch_task, landed_record
from tasks.lineage import lineage_tags
from tasks.model_card import CardFacts, render
from tasks.registry import (
    CHAMPION,
    TRAINING_KEY_TAG,
    VersionInfo,
    find_by_training_key,
    load_model,
    log_text,
    record_decision_task,
    register_task,
    version_by_alias,
)
from tasks.storage import content_hash, open_storage
from tasks.study import study_name
from tasks.train import top_features, train_task
from tasks.tune import tune_task
from tasks.validate import GateResult, landed_batches, validate_batch_task


class GateRefusedError(RuntimeError):
    """Training was asked to use a batch that the validation gate quarantined."""


def ensure_validated(config: PerennialConfig, batches: list[str]) -> dict[str, GateResult]:
    """Land (if not landed yet) and validate every batch; refuse the run if any fails the gate."""
    storage = open_storage(config.home)
    results = {}
    for batch in batches:
        if landed_record(storage, config, batch) is None:
            land_batch_task(config, batch, None)
        results[batch] = validate_batch_task(config, batch)
    failed = [r for r in results.values() if not r.passed]
    if failed:
        details = "; ".join(f"{r.batch}: {r.headline()} (see {r.reason_key})" for r in failed)
        raise GateRefusedError(f"training refused: quarantined batch(es): {details}")
    return results


def training_key(name: str, config: PerennialConfig, trials: int | None) -> str:
    """Identity of a training run: same study (data + config) and same trial budget."""
    return content_hash(f"{name}|{trials or config.hpo.trials}".encode())[:24]


def existing_summary(config: PerennialConfig, found: VersionInfo) -> dict[str, Any]:
    numbers = json.loads(found.tags.get("perennial.decision_numbers", "{}"))
    champion = version_by_alias(config, CHAMPION)
    return {
        "model": config.model_name,
        "version": found.version,
        "existing": True,
        "promoted": found.tags.get("perennial.decision") == "promoted",
        "reasons": [
            f"identical training already registered v{found.version}: nothing new registered",
            *json.loads(found.tags.get("perennial.decision_reasons", "[]")),
        ],
        "champion_version": champion.version if champion else None,
        "holdout": found.tags.get("perennial.batches", "").split(",")[-1],
        "challenger": numbers.get("challenger"),
        "champion": numbers.get("champion"),
    }


@flow(name="training", log_prints=True)
def training(
    batches: str = "",
    trials: int | None = None,
    reason: str = "manual run",
    dataset: str = "flights",
) -> dict[str, Any]:
    """Train a challenger on `batches` (e.g. `2013-01..2013-06`; the newest is the holdout) and
    promote it if it beats the champion. Empty `batches` means every landed batch.

    Args:
        batches: Batch range to train on, e.g. 2013-01..2013-06 (the newest is the holdout);
            empty: every landed batch.
        trials: Optuna trials of the search; empty: the dataset config's hpo.trials.
        reason: Why this run happens; recorded with the model version and the decision.
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
    """
    logger = get_run_logger()
    config = dataset_config(dataset)
    storage = open_storage(config.home)
    chosen = expand_range(batches, config.time) if batches else landed_batches(storage, config)
    logger.info("training %s on %s (%s)", config.model_name, ",".join(chosen), reason)
    gate = ensure_validated(config, chosen)
    hashes = {batch: result.sha256 for batch, result in gate.items()}
    name = study_name(config, content_hash(json.dumps(hashes, sort_keys=True).encode()))
    key = training_key(name, config, trials)
    existing = find_by_training_key(config, key)
    if existing and "perennial.decision" in existing.tags:
        logger.info("identical training already registered v%s; nothing new", existing.version)
        return existing_summary(config, existing)

    data = build_datasets_task(config, chosen)
    champion = version_by_alias(config, CHAMPION)
    tuned = tune_task(data, config, name, champion.params if champion else None, trials)
    if existing:  # registered by a run that crashed before deciding: decide for it now
        logger.info("finishing the decision for v%s (its run stopped early)", existing.version)
        model = load_model(config, version=existing.version)
    else:
        model = train_task(data, config, tuned)
    champion_model = load_model(config, champion.version) if champion else None
    comparison = compare_task(
        model,
        champion_model,
        data.x_holdout,
        data.y_holdout,
        config.primary_metric,
        config.guard_metrics,
        config.promotion,
        config.hpo.seed,
    )
    flow_run_id = flow_run.get_id()
    if existing:
        registered = existing
    else:
        tags = lineage_tags(
            batches=chosen,
            batch_hashes=hashes,
            suite=config.validation.suite,
            gate_summary="; ".join(f"{b}: {r.headline()}" for b, r in gate.items()),
            config_hash=config.fingerprint(),
            study=tuned.study_name,
            best_trial=tuned.best_trial,
            seed=config.hpo.seed,
            flow_run_id=flow_run_id,
        )
        tags |= {"perennial.reason": reason, TRAINING_KEY_TAG: key}
        metrics = {
            f"holdout_{k}": v
            for k, v in comparison.challenger.as_dict().items()
            if isinstance(v, (int, float))
        }
        metrics["validation_auc"] = tuned.best_value
        params = {**tuned.best_params, "n_estimators": tuned.best_rounds}
        registered = register_task(
            config, model, data.x_holdout, params, metrics, tags, {}, tuned.figures
        )
        if not registered.created:  # an identical run elsewhere registered first: it decides
            logger.info(
                "identical training registered v%s meanwhile; nothing new", registered.version
            )
            return existing_summary(config, registered)
    # Everything the version needs is written before the alias moves (the move is last): the
    # drift reference profile (the monitor compares later batches with what it learnt) and
    # its model card. A crash in between leaves the old champion with all it needs.
    from tasks.drift import save_reference_task
    from tasks.evaluate import predict

    fit_scores = predict(model, data.x_fit)
    save_reference_task(config, registered.version, data.x_fit, data.y_fit, fit_scores)
    facts = CardFacts(
        version=registered.version,
        batches=chosen,
        holdout=data.split.holdout,
        validation=data.split.validation,
        batch_hashes=hashes,
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
        top_features=top_features(model),
    )
    card = render(config, facts, comparison)
    log_text(config, registered.run_id, card, "model_card.md")
    decision = record_decision_task(
        config,
        registered.version,
        comparison.decision,
        comparison.challenger,
        comparison.champion,
        champion.version if champion else None,
        f"training flow run {flow_run_id or 'local'}: {reason}",
    )
    if decision != comparison.decision:  # the champion moved under us: the card says so
        comparison.decision = decision
        card = render(config, facts, comparison)
        log_text(config, registered.run_id, card, "model_card.md")
    create_markdown_artifact(
        markdown=card,
        key=artifact_key(f"{config.dataset}-model-card"),
        description=f"{config.model_name} v{registered.version}: {decision.summary()}",
    )
    logger.info("v%s: %s", registered.version, decision.summary())
    current = version_by_alias(config, CHAMPION)
    return {
        "model": config.model_name,
        "version": registered.version,
        "existing": False,
        "promoted": decision.promote,
        "reasons": decision.reasons,
        "blockers": decision.blockers,
        "champion_version": current.version if current else None,
        "holdout": data.split.holdout,
        "rows": {"train": len(data.x_fit), "holdout": len(data.x_holdout)},
        "challenger": comparison.challenger.as_dict(),
        "champion": comparison.champion.as_dict() if comparison.champion else None,
        "interval": decision.interval,
        "best_params": tuned.best_params,
        "study": tuned.study_name,
        "trials": {
            "total": tuned.trials_total,
            "run": tuned.trials_run,
            "pruned": tuned.trials_pruned,
        },
    }
