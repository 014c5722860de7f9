"""The report: one self-contained HTML page per model (performance per batch, decisions, drift,
quarantines, cost), stored as `reports/<model>.html` in the home, with a Prefect link artifact
pointing at it. Monitoring refreshes the same page after each batch."""

from __future__ import annotations

from prefect import flow

from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.watch.report import ReportSummary, write_report_task


@flow(name="report", log_prints=True)
def report(dataset: str = DEFAULT_DATASET, configs_dir: str | None = None) -> ReportSummary:
    """Write the model's report page.

    Args:
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
        configs_dir: Folder of the dataset YAML, as a CLI run with `--config DIR/x.yaml`
            names it; empty: the operator's (configs/, or PERENNIAL_CONFIGS_DIR).
    """
    config = dataset_config(dataset, configs_dir)
    return write_report_task(config)
