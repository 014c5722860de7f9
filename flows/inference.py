"""Batch inference: gate the batch, score it with the champion (and the challenger, in shadow),
write `predictions/<dataset>/<batch>.parquet`."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.training import GateRefusedError
from tasks.batches import check_batch
from tasks.config import dataset_config
from tasks.ingest import land_batch_task, landed_record
from tasks.predict import score_batch_task
from tasks.storage import open_storage
from tasks.validate import validate_batch_task


@flow(name="inference", log_prints=True)
def inference(batch: str, dataset: str = "flights") -> dict[str, Any]:
    """Score `batch` with `models:/<model>@champion` (landing it from the source if needed);
    a batch that fails the gate is quarantined and not scored."""
    config = dataset_config(dataset)
    check_batch(batch, config.time)
    if landed_record(open_storage(config.home), config, batch) is None:
        land_batch_task(config, batch, None)
    gate = validate_batch_task(config, batch)
    if not gate.passed:
        raise GateRefusedError(
            f"batch {batch} failed the gate ({gate.headline()}); see {gate.reason_key}"
        )
    return score_batch_task(config, batch)
