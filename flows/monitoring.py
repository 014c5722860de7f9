"""Monitoring: land a batch if needed, gate it, measure its drift against the champion's
reference profile, leave the artifacts and, on alert, emit `perennial.drift.detected` (which the
training deployment's trigger turns into a retrain). When the batch was scored in shadow and
its labels are in, it also compares challenger and champion on it, and the A/B arms of the live
traffic of its period; it records the champion's metrics on the batch (performance over time)
and refreshes the model's report page. `live_monitoring` measures the drift of live traffic
instead."""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow

from tasks.core.batches import check_batch
from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.data.ingest import newest_landed_task
from tasks.data.validate import gate_batches_task
from tasks.serve.predict import ShadowReport, compare_shadow_task
from tasks.watch.arms import ArmsReport, compare_arms_task
from tasks.watch.drift import measure_drift_task, report_drift_task
from tasks.watch.live import live_time
from tasks.watch.profile import ALERT, DriftReport
from tasks.watch.report import ReportSummary, record_batch_task, refresh_report_task


@dataclass(kw_only=True)
class MonitoringSummary(DriftReport):
    """What a monitoring run returns: the drift report, where its plot is, whether the drift
    event went out, and what the batch's labels allowed: the shadow comparison, the A/B arms of
    its live traffic (None without them) and the refreshed report page (None if it failed)."""

    plot_key: str
    event_emitted: bool
    shadow: ShadowReport | None
    arms: ArmsReport | None
    report: ReportSummary | None


@dataclass(kw_only=True)
class LiveMonitoringSummary(DriftReport):
    """What a live monitoring run returns: the drift report of the sampled live traffic."""

    live: bool  # True: tells this JSON from a batch's
    plot_key: str
    event_emitted: bool


@flow(name="monitoring", log_prints=True)
def monitoring(
    batch: str = "", dataset: str = DEFAULT_DATASET, configs_dir: str | None = None
) -> MonitoringSummary:
    """Measure drift of `batch` (e.g. `2013-07`) against the champion's training data; empty
    `batch` (the scheduled run) means the newest landed batch. Drift is reported, not refused:
    only a batch that fails the validation gate stops the flow.

    Args:
        batch: Batch to check, e.g. 2013-07 (landed from the source if needed); empty: the
            newest landed batch.
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
        configs_dir: Folder of the dataset YAML, as a CLI run with `--config DIR/x.yaml`
            names it; empty: the operator's (configs/, or PERENNIAL_CONFIGS_DIR).
    """
    config = dataset_config(dataset, configs_dir)
    batch = check_batch(batch, config.time) if batch else newest_landed_task(config)
    gate_batches_task(config, [batch], "monitoring")
    report = measure_drift_task(config, batch)
    plot_key = report_drift_task(config, report)
    shadow = compare_shadow_task(config, batch)
    arms = compare_arms_task(config, batch)
    record_batch_task(config, report)
    page = refresh_report_task(config)
    return MonitoringSummary(
        **vars(report),
        plot_key=plot_key,
        event_emitted=report.status == ALERT,
        shadow=shadow,
        arms=arms,
        report=page,
    )


@flow(name="live-monitoring", log_prints=True)
def live_monitoring(
    batch: str, dataset: str = DEFAULT_DATASET, configs_dir: str | None = None
) -> LiveMonitoringSummary:
    """Measure drift of the live traffic `perennial serve` sampled in `batch` (a period of
    `serve.live_period`, e.g. 2013-07) against the champion's training data; on alert emit
    the drift event, marked live, which retrains as batch drift does.

    Args:
        batch: Live period to check, e.g. 2013-07.
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
        configs_dir: Folder of the dataset YAML, as a CLI run with `--config DIR/x.yaml`
            names it; empty: the operator's (configs/, or PERENNIAL_CONFIGS_DIR).
    """
    config = dataset_config(dataset, configs_dir)
    batch = check_batch(batch, live_time(config))
    report = measure_drift_task(config, batch, live=True)
    plot_key = report_drift_task(config, report, live=True)
    return LiveMonitoringSummary(
        **vars(report), live=True, plot_key=plot_key, event_emitted=report.status == ALERT
    )
