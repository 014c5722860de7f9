"""Batch inference: gate the batch, score it with the champion (and the challenger, in shadow),
write the predictions (the `predictions` entry of `tasks/core/catalog.py`)."""

from __future__ import annotations

from prefect import flow

from tasks.core.batches import check_batch
from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.data.validate import gate_batches_task
from tasks.serve.predict import ScoringSummary, score_batch_task


@flow(name="inference", log_prints=True)
def inference(
    batch: str,
    dataset: str = DEFAULT_DATASET,
    explain: bool = False,
    configs_dir: str | None = None,
) -> ScoringSummary:
    """Score `batch` with `models:/<model>@champion` (landing it from the source if needed);
    a batch that fails the gate is quarantined and not scored. `explain` adds the champion's
    top three reasons per row."""
    config = dataset_config(dataset, configs_dir)
    check_batch(batch, config.time)
    gate_batches_task(config, [batch], "scoring")
    return score_batch_task(config, batch, explain)
