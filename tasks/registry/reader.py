"""What `perennial status` shows, read straight from MLflow's SQLite store with `sqlite3`.

`import mlflow` alone takes about 3-6 s; status must answer within 2 s. The registry stays the
one source of truth: these queries read the same tables MLflow's own client reads (aliases,
model versions and their tags, runs' latest metrics), read-only, and return what
`tasks.registry.client.version_by_alias`, `tasks.registry.champion.recent_decisions` and
`tasks.registry.cost.recent_costs` return (`tests/integration/test_registry_reader.py` checks
both against one registry). A tracking server URL, or a schema these queries do not know, goes
through MLflow instead (`Unreadable`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# tasks.registry.cost's names (importing it imports prefect): the run totals, beside per-stage
# figures.
COST_PREFIX = "cost_"
COST_TOTALS = ("wall_seconds", "cpu_seconds", "peak_rss_mb", "read_bytes", "written_bytes", "usd")
DELETED = "Deleted_Internal"  # MLflow's stage of a deleted version: its client hides them


class Unreadable(Exception):
    """Not a SQLite registry these queries can read: ask MLflow."""


def sqlite_path(tracking_uri: str) -> Path:
    parts = urlsplit(tracking_uri)
    if parts.scheme != "sqlite":
        raise Unreadable(tracking_uri)
    return Path(unquote(parts.path))


def connect(tracking_uri: str) -> sqlite3.Connection | None:
    """A read-only connection, or None when the database does not exist yet (no model)."""
    path = sqlite_path(tracking_uri)
    if not path.is_file():
        return None
    return sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=10)


def _metrics(db: sqlite3.Connection, run_id: str) -> dict[str, float]:
    rows = db.execute("SELECT key, value, is_nan FROM latest_metrics WHERE run_uuid = ?", (run_id,))
    return {key: math.nan if is_nan else float(value) for key, value, is_nan in rows}


def _version_tags(db: sqlite3.Connection, model: str, version: int) -> dict[str, str]:
    rows = db.execute(
        "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
        (model, version),
    )
    return {key: value for key, value in rows}


def by_alias(db: sqlite3.Connection, model: str, alias: str) -> dict[str, Any] | None:
    """The version an alias points at: version, run id, its run's metrics and its tags."""
    found = db.execute(
        "SELECT v.version, v.run_id FROM registered_model_aliases a JOIN model_versions v "
        "ON v.name = a.name AND v.version = a.version "
        "WHERE a.name = ? AND a.alias = ? AND v.current_stage != ?",
        (model, alias, DELETED),
    ).fetchone()
    if found is None:
        return None
    version, run_id = found
    return {
        "version": str(version),
        "run_id": run_id,
        "metrics": _metrics(db, run_id) if run_id else {},
        "tags": _version_tags(db, model, version),
    }


def decisions(db: sqlite3.Connection, model: str, limit: int = 5) -> list[dict[str, Any]]:
    """The newest versions' promotion decisions, newest first (`recent_decisions`)."""
    versions = db.execute(
        "SELECT version FROM model_versions WHERE name = ? AND current_stage != ? "
        "ORDER BY version DESC LIMIT ?",
        (model, DELETED, limit),
    ).fetchall()
    out = []
    for (version,) in versions:
        tags = _version_tags(db, model, version)
        out.append(
            {
                "version": str(version),
                "decision": tags.get("perennial.decision", "pending"),
                "reasons": json.loads(tags.get("perennial.decision_reasons", "[]")),
                "batches": tags.get("perennial.batches", ""),
            }
        )
    return out


def costs(
    db: sqlite3.Connection, experiment: str, model: str, limit: int = 5
) -> list[dict[str, Any]]:
    """The newest active runs of the experiment that recorded a cost, newest first."""
    runs = db.execute(
        "SELECT r.run_uuid FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
        "JOIN latest_metrics m ON m.run_uuid = r.run_uuid AND m.key = ? "
        "WHERE e.name = ? AND e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active' "
        "AND m.is_nan = 0 AND m.value >= 0 ORDER BY r.start_time DESC LIMIT ?",
        (COST_PREFIX + "usd", experiment, limit),
    ).fetchall()
    versions = dict(
        db.execute(
            "SELECT run_id, version FROM model_versions WHERE name = ? AND current_stage != ?",
            (model, DELETED),
        ).fetchall()
    )
    out = []
    for (run_id,) in runs:
        metrics = _metrics(db, run_id)
        version = versions.get(run_id)
        out.append(
            {
                "run_id": run_id,
                "version": None if version is None else str(version),
                **{
                    name: metrics[COST_PREFIX + name]
                    for name in COST_TOTALS
                    if COST_PREFIX + name in metrics
                },
            }
        )
    return out


def erased(db: sqlite3.Connection, model: str) -> list[dict[str, Any]]:
    """Versions trained on erased rows (`tasks.registry.erasure_marks.erased_versions`)."""
    from tasks.registry.erasure_marks import ERASED_TAG, erased_entries

    rows = db.execute(
        "SELECT t.version, t.value FROM model_version_tags t JOIN model_versions v "
        "ON v.name = t.name AND v.version = t.version "
        "WHERE t.name = ? AND t.key = ? AND v.current_stage != ?",
        (model, ERASED_TAG, DELETED),
    )
    return erased_entries({str(version): {ERASED_TAG: value} for version, value in rows})


def status_snapshot(tracking_uri: str, model: str, experiment: str) -> dict[str, Any]:
    """champion, challenger, decisions and costs, as `perennial status` shows them."""
    try:
        db = connect(tracking_uri)
    except sqlite3.Error as exc:
        raise Unreadable(str(exc)) from exc
    if db is None:
        return {"champion": None, "challenger": None, "decisions": [], "costs": [], "erased": []}
    try:
        with db:
            return {
                "champion": by_alias(db, model, "champion"),
                "challenger": by_alias(db, model, "challenger"),
                "decisions": decisions(db, model),
                "costs": costs(db, experiment, model),
                "erased": erased(db, model),
            }
    except sqlite3.Error as exc:  # an older or newer schema: MLflow knows it
        raise Unreadable(str(exc)) from exc
    finally:
        db.close()
