"""Monitoring: land a batch if needed, gate it, measure its drift against the champion's
reference profile, leave the artifacts and, on alert, emit `perennial.drift.detected` (which the
training deployment's trigger turns into a retrain). When the batch was scored in shadow and
its labels are in, it also compares challenger and champion on it."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from flows.training import GateRefusedError
from tasks.batches import check_batch
from tasks.config import dataset_config
from tasks.drift import measure_drift_task, report_drift_task
from tasks.ingest import land_batch_task, landed_record
from tasks.predict import compare_shadow_task
from tasks.registry import CHAMPION, RegistryError, version_by_alias
from tasks.storage import open_storage
from tasks.validate import landed_batches, validate_batch_task


@flow(name="monitoring", log_prints=True)
def monitoring(batch: str = "", dataset: str = "flights") -> dict[str, Any]:
    """Measure drift of `batch` (e.g. `2013-07`) against the champion's training data; empty
    `batch` (the scheduled run) means the newest landed batch. Drift is reported, not refused:
    only a batch that fails the validation gate stops the flow.

    Args:
        batch: Batch to check, e.g. 2013-07 (landed from the source if needed); empty: the
            newest landed batch.
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
    """
    logger = get_run_logger()
    config = dataset_config(dataset)
    storage = open_storage(config.home)
    if not batch:
        landed = landed_batches(storage, config)
        if not landed:
            raise RegistryError(f"no landed batch of {config.dataset} to monitor: ingest one")
        batch = landed[-1]
    check_batch(batch, config.time)
    if landed_record(storage, config, batch) is None:
        land_batch_task(config, batch, None)
    gate = validate_batch_task(config, batch)
    if not gate.passed:
        raise GateRefusedError(
            f"batch {batch} failed the gate ({gate.headline()}); see {gate.reason_key}"
        )
    champion = version_by_alias(config, CHAMPION)
    if champion is None:
        raise RegistryError(f"{config.model_name} has no champion yet: train one first")
    report = measure_drift_task(
        config, batch, champion.version, champion.metrics.get("holdout_roc_auc")
    )
    plot_key = report_drift_task(config, report)
    logger.info("drift %s vs v%s: %s", batch, champion.version, "; ".join(report.reasons))
    shadow = compare_shadow_task(config, batch)
    if shadow is not None:
        logger.info(
            "shadow %s: challenger v%s minus champion v%s, ROC AUC %+.4f",
            batch,
            shadow["challenger"]["version"],
            shadow["champion"]["version"],
            shadow["gain"]["roc_auc"],
        )
    return {
        **report.as_dict(),
        "plot_key": plot_key,
        "event_emitted": report.status == "alert",
        "shadow": shadow,
    }
