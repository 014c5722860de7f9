"""Drift: what the monitor makes of a batch measured against the champion's reference profile
(`tasks/watch/profile.py`), and what it reports and emits.

What alerts (and emits `perennial.drift.detected`, which the training deployment's trigger
turns into a retrain) is the champion's performance at risk, not any feature moving:

- with labels, the champion's judged metric on the batch (the target task's: AUC, macro AUC,
  RMSE, ...; tasks/watch/task_metrics.py) worse than the bootstrap interval of that metric on
  its own holdout (stored in the profile): the seasons move the weather's PSI to 1-8 every
  month while the model does as well as on its holdout;
- before labels, the PSI of each feature weighted by the champion's use of it (its mean |SHAP|
  share, from registration) above a threshold calibrated on the reference's own month-to-month
  drift (the validation and holdout batches against the fit rows, times `drift_factor`), so a
  batch like those never alerts and a shift in a feature the model ignores never does.

Raw per-feature PSI stays in the report (and `monitor --json`); at `psi_alert` it warns. A
profile saved before these facts existed is judged by the older rules (`psi_alert`,
`auc_drop_alert`, `label_shift_alert`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.artifacts import artifact_key
from tasks.core.config import PerennialConfig
from tasks.core.config_drift import DriftConfig
from tasks.core.storage import Storage
from tasks.watch.profile import (
    ALERT,
    OK,
    WARN,
    DriftReport,
    build_profile,
    compare,
    judge,
    load_reference,
    save_reference,
    unmonitored,
)

DRIFT_EVENT = "perennial.drift.detected"
BATCH_LABEL = "perennial.batch"  # resource label of the drift event: prefect.yaml's for_each


def measure_batch(
    storage: Storage,
    config: PerennialConfig,
    batch: str,
    profile: dict[str, Any],
    model: Any,
    holdout_value: float | None,
) -> DriftReport:
    """Score a validated batch with the profiled model and compare it with the profile."""
    from tasks.data.features import label, model_inputs
    from tasks.registry.fairness import labelled_fairness
    from tasks.watch.estimate import estimate_metric, with_past_errors
    from tasks.watch.task_metrics import champion_scores, realised_metrics

    frame = storage.read_parquet(catalog.key("validated", config, batch=batch))
    x = model_inputs(frame, config)
    scores = champion_scores(model, x, config)
    labelled = frame[config.target.column].notna().to_numpy()
    metric = str(profile.get("metric", config.primary_metric))
    labels, realised, labelled_metrics = None, None, None
    if labelled.any():
        labels = label(frame[labelled], config)
        labelled_metrics = realised_metrics(labels, scores[labelled], config)
        realised = labelled_metrics.get(metric)
    report = compare(
        profile,
        batch,
        x,
        scores,
        labels,
        config.drift,
        holdout_value,
        realised,
        exclude=unmonitored(config),
        config=config,
    )
    estimated = estimate_metric(profile.get("calibration"), metric, scores, x, realised)
    if estimated is not None:
        estimated = with_past_errors(estimated, past_estimate_errors(storage, config, batch))
    report.estimated = estimated
    report.labelled = labelled_metrics
    if labels is not None:
        report.fairness = labelled_fairness(frame[labelled], labels, scores[labelled], config)
    if labels is None and report.rows >= config.drift.min_rows:
        report.status, report.reasons = judge(report, config.drift)  # the estimate counts too
    return report


def past_estimate_errors(storage: Storage, config: PerennialConfig, batch: str) -> list[float]:
    """The estimate's error (estimate - real value) on each earlier batch monitored with its
    labels."""
    from tasks.watch.report import load_batch_records

    errors = []
    for record in load_batch_records(storage, config):
        estimated = record.get("estimated") or {}
        if record["batch"] < batch and estimated.get("error") is not None:
            errors.append(float(estimated["error"]))
    return errors


# -- reporting --------------------------------------------------------------------------------


def plot_psi(report: DriftReport, drift: DriftConfig) -> bytes:
    """PNG: a bar per feature, coloured by level, with the warn and alert lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.psi)[::-1]
    values = [report.psi[n] for n in names]
    colours = [
        "#c0392b" if v >= drift.psi_alert else "#e67e22" if v >= drift.psi_warn else "#7f8c8d"
        for v in values
    ]
    figure, axes = plt.subplots(figsize=(7, 0.28 * len(names) + 1.2))
    axes.barh(names, values, color=colours)
    axes.axvline(drift.psi_warn, color="#e67e22", linestyle="--", label=f"warn {drift.psi_warn}")
    axes.axvline(drift.psi_alert, color="#c0392b", linestyle="--", label=f"alert {drift.psi_alert}")
    axes.set_xlabel("PSI vs reference")
    axes.set_title(f"{report.dataset} {report.batch} vs v{report.reference_version}")
    axes.legend(loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def table_rows(report: DriftReport, drift: DriftConfig) -> list[dict[str, Any]]:
    def level(value: float) -> str:
        return ALERT if value >= drift.psi_alert else WARN if value >= drift.psi_warn else OK

    return [{"feature": n, "psi": round(v, 4), "level": level(v)} for n, v in report.psi.items()]


def estimate_line(report: DriftReport) -> str:
    """The estimate as a markdown line, marked as an estimate, the real value beside it."""
    if not report.estimated:
        return ""
    from tasks.watch.estimate import estimate_text

    return "\n- " + estimate_text(report.estimated).replace("estimated", "**estimated**", 1)


def announce_drift(config: PerennialConfig, report: DriftReport, **marks: Any) -> None:
    """Tell people (an alert, once per batch and window) and the training deployment (the
    event, whose trigger retrains once per batch and window: see prefect.yaml)."""
    from tasks.notify.alerts import alert_drift

    alert_drift(config, report)
    emit_drift(config, report, **marks)


def emit_drift(config: PerennialConfig, report: DriftReport, **marks: Any) -> None:
    """The drift event; `marks` join the payload (e.g. `live=True` for live traffic)."""
    from prefect.events import emit_event

    emit_event(
        event=DRIFT_EVENT,
        # The batch is a label of the resource so that the trigger can count per batch
        # (`for_each` reads resource labels, not the payload).
        resource={
            "prefect.resource.id": f"perennial.dataset.{config.dataset}",
            BATCH_LABEL: report.batch,
        },
        related=[
            {
                "prefect.resource.id": f"perennial.model.{config.model_name}",
                "prefect.resource.role": "model",
            }
        ],
        payload={**report.event_payload(), **marks},
    )


# -- Prefect tasks ----------------------------------------------------------------------------


@task(name="save-reference-profile", cache_policy=NO_CACHE)
def save_reference_task(
    config: PerennialConfig,
    version: str,
    x: pd.DataFrame,
    y: pd.Series,
    scores: np.ndarray,
    calibration: dict[str, Any] | None = None,
    model: Any = None,
    data: Any = None,
    importance: pd.Series | None = None,
) -> str:
    """Save the profile; given the model, its datasets (tasks/features.Datasets) and its SHAP
    importance, with the facts the monitor judges by (the interval of its judged metric on its
    holdout, feature weights, the reference's own recent drift)."""
    from tasks.core.storage import open_storage
    from tasks.watch.task_metrics import holdout_interval

    interval, recent = None, None
    if model is not None and data is not None:
        interval = holdout_interval(model, data.x_holdout, data.y_holdout, config)
        recent = [data.x_valid, data.x_holdout]
    weights = None if importance is None else {str(k): float(v) for k, v in importance.items()}
    profile = build_profile(x, y, scores, config, version, calibration, weights, interval, recent)
    return save_reference(open_storage(config.home), config, profile)


@task(name="measure-drift", cache_policy=NO_CACHE)
def measure_drift_task(config: PerennialConfig, batch: str, live: bool = False) -> DriftReport:
    """Drift of a validated batch (or, with `live`, of the live traffic `perennial serve`
    sampled in that period) against the champion's reference profile."""
    from tasks.core.run_logging import run_logger
    from tasks.core.storage import open_storage
    from tasks.registry.client import CHAMPION, RegistryError, version_by_alias
    from tasks.registry.model_store import load_model
    from tasks.watch.live import measure_live

    champion = version_by_alias(config, CHAMPION)
    if champion is None:
        raise RegistryError(f"{config.model_name} has no champion yet: train one first")
    storage = open_storage(config.home)
    profile = load_reference(storage, config, champion.version)
    model = load_model(config, version=champion.version)
    metric = str(profile.get("metric", config.primary_metric))
    holdout_value = champion.metrics.get(f"holdout_{metric}")
    measure = measure_live if live else measure_batch
    report = measure(storage, config, batch, profile, model, holdout_value)
    what = "live drift" if live else "drift"
    run_logger().info("%s %s vs v%s: %s", what, batch, champion.version, "; ".join(report.reasons))
    return report


@task(name="report-drift", cache_policy=NO_CACHE)
def report_drift_task(config: PerennialConfig, report: DriftReport, live: bool = False) -> str:
    """Table and plot artifacts; the drift event when the batch alerts. `live`: the report is of
    live traffic sampled by `perennial serve` (artifacts of their own, the event marked `live`).
    Returns the plot key."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from tasks.core.storage import open_storage

    storage = open_storage(config.home)
    what = "live traffic " if live else ""
    slug = artifact_key(f"{'live-' if live else ''}drift-{config.dataset}-{report.batch}")
    create_table_artifact(
        table=table_rows(report, config.drift),
        key=slug,
        description=f"PSI per feature of {what}{report.batch} vs v{report.reference_version}: "
        f"{report.status}",
    )
    plot_key = catalog.key("live_drift_plot" if live else "drift_plot", config, batch=report.batch)
    storage.write_bytes(plot_key, plot_psi(report, config.drift))
    location = storage.location(plot_key)
    sampled = f"{report.rows:,} sampled rows. " if live else ""
    create_markdown_artifact(
        key=f"{slug}-summary",
        markdown=(
            f"### Drift of {what}{config.dataset} {report.batch}: **{report.status}**\n\n"
            + "\n".join(f"- {r}" for r in report.reasons)
            + estimate_line(report)
            + f"\n\n{sampled}PSI per feature (PNG): [{location}]({location})\n"
        ),
        description=f"{'live ' if live else ''}drift {report.batch}: {report.status}",
    )
    if report.status == ALERT:
        announce_drift(config, report, **({"live": True} if live else {}))
    return plot_key
