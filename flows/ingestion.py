"""The ingestion flows: land a batch (immutable, idempotent), then run the validation gate; or
many batches (a range, or a folder of files) in one run."""

from __future__ import annotations

import warnings

from prefect import flow
from prefect.runtime import deployment

from tasks.core.batches import check_batch
from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.data.bulk_ingest import (
    IngestSummary,
    batch_plan_task,
    ingest_batch_task,
    refused_summary,
    run_summary_task,
)
from tasks.data.ingest import land_batch_task
from tasks.data.raw_files import IngestError
from tasks.data.validate import gate_batches_task
from tasks.data.verdict import BatchSummary, gate_summary

# Prefect validates flow parameters with a pydantic model built from the signature, and pydantic
# warns that a field named `validate` shadows BaseModel.validate (harmless: Prefect never calls
# it) at every import. The name stays: it is the deployment parameter in prefect.yaml and the UI.
warnings.filterwarnings(
    "ignore",
    message='Field name "validate" in "IngestionModel" shadows an attribute',
    category=UserWarning,
)


@flow(name="ingestion", log_prints=True)
def ingestion(
    batch: str,
    source: str | None = None,
    validate: bool = True,
    land: bool = True,
    dataset: str = DEFAULT_DATASET,
    configs_dir: str | None = None,
) -> BatchSummary:
    """Land `batch` (from `source`, a CSV/Parquet file, or the dataset's configured source) and
    validate it; a failing batch is quarantined with its reason, never dropped. Without `land`,
    only a batch landed before is validated."""
    config = dataset_config(dataset, configs_dir)
    check_batch(batch, config.time)
    if source and deployment.id:
        # A deployment's parameters come from the UI and the API: they may not name a file
        # on the worker's disk. Served batches come from the dataset's configured source.
        raise IngestError(
            f"a served ingestion of {config.dataset} reads the dataset's configured source, not "
            "a file named in its parameters: put the file where source.path_template says"
        )
    landing = land_batch_task(config, batch, source).status if land else "unchanged"
    gate = (
        gate_batches_task(config, [batch], "ingestion", land_missing=False, refuse=False)
        if validate
        else {}
    )
    return gate_summary(config, batch, landing, gate.get(batch))


@flow(name="ingest-batches", log_prints=True)
def ingest_batches(
    batches: str = "",
    folder: str | None = None,
    gate: bool = True,
    dataset: str = DEFAULT_DATASET,
    configs_dir: str | None = None,
) -> IngestSummary:
    """Land and gate many batches in one run: the range or list `batches` (e.g.
    `2012-01..2012-12`, each from the dataset's source), or every file of `folder` named as a
    batch. A refused or quarantined batch is reported and the others still land."""
    config = dataset_config(dataset, configs_dir)
    plan = batch_plan_task(config, batches, folder, gate, served=bool(deployment.id))
    refused: list[BatchSummary] = [
        refused_summary(config, batch, why) for batch, why in plan.refused.items()
    ]
    total = len(plan.sources)
    results = [
        ingest_batch_task(config, batch, source, gate, position, total)
        for position, (batch, source) in enumerate(plan.sources.items(), start=1)
    ]
    return run_summary_task(config, plan, refused + results)
