"""Performance over time, and the report that shows it.

Monitoring records what it saw of each batch with the champion of the moment (drift per
feature, the estimate before labels and, when the batch has labels, the champion's real
metrics, named by the target task's metric: tasks/watch/task_metrics.py) as a
small JSON, `monitoring/<dataset>/<model>/<batch>.v<version>.json`, written once per (version,
batch). `perennial report` gathers those records with the registry's promotion decisions and
champion moves, the quarantined batches and the cost of each training run, and writes one
self-contained HTML page per model, `reports/<model>.html` (built by tasks/watch/report_page.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.artifacts import artifact_key
from tasks.core.config import PerennialConfig
from tasks.core.results import jsonable
from tasks.core.storage import Storage

if TYPE_CHECKING:
    from tasks.watch.profile import DriftReport

MAX_RUNS = 100  # training runs whose cost the page shows (newest)
REASON_SUFFIX = ".reason.json"


# -- the record of a monitored batch ----------------------------------------------------------


def batch_record(report: DriftReport) -> dict[str, Any]:
    """What the report needs of a monitored batch, from its drift report."""
    return {
        "batch": report.batch,
        "model_version": report.reference_version,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rows": report.rows,
        "metric": report.metric,  # the judged metric, e.g. roc_auc, macro_auc, rmse
        "labelled": report.labelled,  # the task's metrics, label statistic, rows; None before
        "estimated": jsonable(report.estimated),  # with the real value beside it when labelled
        "fairness": report.fairness,  # the champion's group metrics and gaps, with labels
        "drift": {
            "status": report.status,
            "max_psi": report.max_psi,
            "psi": report.psi,
            "drifted_features": report.drifted_features,
        },
    }


def save_batch_record(storage: Storage, config: PerennialConfig, record: dict[str, Any]) -> bool:
    """Write the record once per (model version, batch); True if this call wrote it. A record
    made before the batch had labels is replaced by one with them (labels landed later)."""
    key = catalog.key(
        "batch_record", config, batch=record["batch"], version=record["model_version"]
    )
    data = json.dumps(record, indent=1, sort_keys=True).encode()
    if storage.create_bytes(key, data):
        return True
    if record["labelled"] and not storage.read_json(key).get("labelled"):
        storage.write_bytes(key, data)
        return True
    return False


def load_batch_records(storage: Storage, config: PerennialConfig) -> list[dict[str, Any]]:
    """One record per batch, oldest batch first: when several champions saw a batch, the one
    recorded last."""
    newest: dict[str, dict[str, Any]] = {}
    for key in storage.list(catalog.key("batch_records", config)):
        if not key.endswith(".json"):
            continue
        record = storage.read_json(key)
        seen = newest.get(record["batch"])
        if seen is None or record["recorded_at"] >= seen["recorded_at"]:
            newest[record["batch"]] = record
    return [newest[batch] for batch in sorted(newest)]


# -- gathering the rest -----------------------------------------------------------------------


def load_quarantines(storage: Storage, config: PerennialConfig) -> list[dict[str, Any]]:
    """Every quarantine reason (archived revisions too), oldest batch first."""
    found = []
    for key in storage.list(catalog.key("quarantine_folder", config)):
        if not key.endswith(REASON_SUFFIX):
            continue
        reason = storage.read_json(key)
        name = key.rsplit("/", 1)[-1].removesuffix(REASON_SUFFIX)
        failed = reason.get("failed") or []
        found.append(
            {
                "batch": name.split(".", 1)[0],
                "revision": reason.get("revision", 1),
                "stage": reason.get("stage", ""),
                "message": reason.get("message", ""),
                "rules": [
                    f"{f.get('expectation')} on {f.get('column') or 'the table'}" for f in failed
                ],
            }
        )
    return sorted(found, key=lambda q: (q["batch"], q["revision"]))


def decision_of(version: Any, metric: str = "roc_auc") -> dict[str, Any]:
    """A model version's promotion decision, from its tags (tasks/registry.py `_decision_tags`):
    challenger and champion in the judged `metric`."""
    tags = version.tags
    numbers = json.loads(tags.get("perennial.decision_numbers", "{}"))
    challenger = numbers.get("challenger") or {}
    champion = numbers.get("champion") or {}
    return {
        "version": str(version.version),
        "decision": tags.get("perennial.decision", "pending"),
        "decided_at": tags.get("perennial.decided_at", ""),
        "holdout": tags.get("perennial.batches", "").split(",")[-1],
        "compared_with": tags.get("perennial.compared_with", "none"),
        "challenger_value": challenger.get(metric),
        "champion_value": champion.get(metric),
        "reasons": json.loads(tags.get("perennial.decision_reasons", "[]")),
    }


def gather_registry(config: PerennialConfig) -> dict[str, list[dict[str, Any]]]:
    """Decisions (oldest version first), champion moves and training-run costs."""
    from mlflow.exceptions import MlflowException

    from tasks.registry.champion import champion_moves
    from tasks.registry.client import connect
    from tasks.registry.cost import recent_costs

    client = connect(config)
    try:
        versions = client.search_model_versions(f"name = '{config.model_name}'")
        moves = champion_moves(client, config.model_name) if versions else []
    except MlflowException:  # no registered model yet
        versions, moves = [], []
    ordered = sorted(versions, key=lambda v: int(v.version))
    decisions = [decision_of(v, config.primary_metric) for v in ordered]
    costs = list(reversed(recent_costs(config, limit=MAX_RUNS)))
    return {"decisions": decisions, "moves": moves, "costs": costs}


def load_replay(storage: Storage, config: PerennialConfig) -> dict[str, Any] | None:
    """The newest `perennial replay` summary of the dataset, if one was run."""
    key = catalog.key("replay", config)
    return dict(storage.read_json(key)) if storage.exists(key) else None


def gather(storage: Storage, config: PerennialConfig) -> dict[str, Any]:
    """Everything the page shows, as plain JSON-able data."""
    return {
        "model": config.model_name,
        "dataset": config.dataset,
        "metric": config.primary_metric,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "psi_warn": config.drift.psi_warn,
        "psi_alert": config.drift.psi_alert,
        "prices_as_of": config.cost.prices_as_of,
        "batches": load_batch_records(storage, config),
        "quarantines": load_quarantines(storage, config),
        "replay": load_replay(storage, config),
        **gather_registry(config),
    }


@dataclass
class ReportSummary:
    """Where the model's report page is, and what it shows (counts of each)."""

    model: str
    key: str
    location: str  # a file:// or s3:// URL
    path: str  # what to open: a local path, or the s3:// URL of an S3 home
    bytes: int
    batches: int
    decisions: int
    quarantines: int
    costs: int


def write_report(storage: Storage, config: PerennialConfig) -> ReportSummary:
    """Build the page and store it under `reports/<model>.html`; a summary of what it shows."""
    from tasks.core.storage import S3Storage
    from tasks.watch.report_page import render_page

    data = gather(storage, config)
    page = render_page(data).encode()
    key = catalog.key("report_page", config)
    storage.write_bytes(key, page)
    location = storage.location(key)
    return ReportSummary(
        model=config.model_name,
        key=key,
        location=location,
        path=location if isinstance(storage, S3Storage) else str(storage.path(key)),
        bytes=len(page),
        batches=len(data["batches"]),
        decisions=len(data["decisions"]),
        quarantines=len(data["quarantines"]),
        costs=len(data["costs"]),
    )


# -- Prefect tasks ----------------------------------------------------------------------------


@task(name="record-batch-performance", cache_policy=NO_CACHE)
def record_batch_task(config: PerennialConfig, report: DriftReport) -> bool:
    from tasks.core.storage import open_storage

    return save_batch_record(open_storage(config.home), config, batch_record(report))


@task(name="write-report", cache_policy=NO_CACHE)
def write_report_task(config: PerennialConfig) -> ReportSummary:
    """The page, and a Prefect link artifact pointing at it."""
    from prefect.artifacts import create_link_artifact

    from tasks.core.storage import open_storage

    summary = write_report(open_storage(config.home), config)
    create_link_artifact(
        key=artifact_key(f"report-{config.model_name}"),
        link=summary.location,
        link_text=f"{config.model_name} report (self-contained HTML)",
        description=f"Performance over time, decisions, drift, quarantines and cost of "
        f"{config.model_name}: {summary.batches} batches, {summary.decisions} decisions",
    )
    return summary


@task(name="refresh-report", cache_policy=NO_CACHE)
def refresh_report_task(config: PerennialConfig) -> ReportSummary | None:
    """Monitoring's refresh of the page: a report that cannot be built is logged, never a
    failed monitoring run (the drift verdict and its event matter more than the page)."""
    from tasks.core.run_logging import run_logger

    try:
        return write_report_task.fn(config)
    except Exception as exc:
        run_logger().warning("report not refreshed: %s: %s", type(exc).__name__, exc)
        return None
