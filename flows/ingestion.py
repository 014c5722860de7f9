"""The ingestion flow: land a batch (immutable, idempotent), then run the validation gate."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import deployment

from tasks.batches import check_batch
from tasks.config import dataset_config
from tasks.ingest import IngestError, land_batch_task, landed_record
from tasks.storage import open_storage
from tasks.validate import validate_batch_task


@flow(name="ingestion", log_prints=True)
def ingestion(
    batch: str,
    source: str | None = None,
    validate: bool = True,
    land: bool = True,
    dataset: str = "flights",
) -> dict[str, Any]:
    """Land `batch` (from `source`, a CSV/Parquet file, or the dataset's configured source) and
    validate it; a failing batch is quarantined with its reason, never dropped."""
    config = dataset_config(dataset)
    check_batch(batch, config.time)
    if source and deployment.id:
        # A deployment's parameters come from the UI and the API: they may not name a file
        # on the worker's disk. Served batches come from the dataset's configured source.
        raise IngestError(
            f"a served ingestion of {config.dataset} reads the dataset's configured source, not "
            "a file named in its parameters: put the file where source.path_template says"
        )
    if land:
        landing = land_batch_task(config, batch, source).status
    elif landed_record(open_storage(config.home), config, batch) is None:
        raise IngestError(
            f"batch {batch} of {config.dataset} has not been landed; run ingest first"
        )
    else:
        landing = "unchanged"
    summary: dict[str, Any] = {
        "dataset": config.dataset,
        "batch": batch,
        "landing": landing,
        "gate": "skipped",
    }
    if validate:
        result = validate_batch_task(config, batch)
        summary.update(
            gate="passed" if result.passed else "failed",
            rows=result.rows,
            failures=[o.describe() for o in result.blocking_failures()],
            warnings=[o.describe() for o in result.warnings()],
            reason_key=result.reason_key,
        )
    return summary
