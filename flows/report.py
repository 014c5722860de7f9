"""The report: one self-contained HTML page per model (performance per batch, decisions, drift,
quarantines, cost), stored as `reports/<model>.html` in the home, with a Prefect link artifact
pointing at it. Monitoring refreshes the same page after each batch."""

from __future__ import annotations

from typing import Any

from prefect import flow

from tasks.core.config import dataset_config
from tasks.watch.report import write_report_task


@flow(name="report", log_prints=True)
def report(dataset: str = "flights") -> dict[str, Any]:
    """Write the model's report page.

    Args:
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
    """
    config = dataset_config(dataset)
    return write_report_task(config)
