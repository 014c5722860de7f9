"""Erasure: a subject's rows removed from every stored copy of a dataset (`perennial forget`).

The copies: every landed revision of every batch, the quarantined copies of them, the validated
batch, the model's predictions of it and the live samples `perennial serve` kept. Where the
newest landed revision holds the subject, its other rows land as a new revision (the gate then
speaks of that one) and every revision that held the subject is destroyed (`Storage.erase`: the
narrow exception to write-once, on S3 every object version); a derived file is rewritten in
place with no earlier version left (`Storage.rewrite_erased`). Predictions refer to rows of the
validated batch by position: the erased positions are dropped and the others renumbered.

Every write is atomic, and what is done is kept in a journal (no values: positions, counts, file
names) under `audit/`: a run killed at any point, run again with the same `--where`, resumes and
finishes; the journal becomes the audit entry (who, when, why, rows per file) at the end.
"""

from __future__ import annotations

import getpass
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from tasks.core import catalog
from tasks.core.catalog import LANDED_SUFFIX, landing_key
from tasks.core.config import PerennialConfig
from tasks.core.storage import Storage, content_hash
from tasks.data.ingest import LandingRecord, landed_batches, landed_history
from tasks.data.privacy import frame_bytes, read_as_text
from tasks.data.raw_files import raw_extension
from tasks.data.subject import Subject

LANDING, QUARANTINE, VALIDATED, PREDICTIONS, LIVE = (
    "landing",
    "quarantine",
    "validated",
    "predictions",
    "live",
)


@dataclass
class ErasedFile:
    """One stored file that held the subject: how many of its rows, and what was done."""

    copy: str  # LANDING, QUARANTINE, VALIDATED, PREDICTIONS or LIVE
    key: str
    rows: int
    action: str  # "destroyed", "rewritten", or "its other rows landed as <key>"


@dataclass
class Erasure:
    """An erasure, planned (dry run) or done: what the audit log keeps. No values."""

    id: str
    dataset: str
    reason: str
    by: str
    started_at: str
    files: list[ErasedFile] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    positions: dict[str, list[int]] = field(default_factory=dict)  # validated rows erased
    done: list[str] = field(default_factory=list)  # steps finished ("<batch>:<copy>")
    models: list[str] = field(default_factory=list)  # model versions marked
    finished_at: str = ""
    dry_run: bool = False

    @property
    def rows(self) -> dict[str, int]:
        """Rows of the subject per copy, over all batches."""
        totals: dict[str, int] = {}
        for erased in self.files:
            totals[erased.copy] = totals.get(erased.copy, 0) + erased.rows
        return totals


def forget(
    storage: Storage,
    config: PerennialConfig,
    subject: Subject,
    reason: str,
    dry_run: bool = False,
) -> Erasure:
    """Erase the subject's rows from every stored copy (or, with `dry_run`, say which files
    and how many rows would change, writing nothing). Resumes an interrupted erasure."""
    journal_key = catalog.key("erasure_journal", config, erasure=subject.id)
    if not dry_run and storage.exists(journal_key):
        erasure = _from_json(storage.read_json(journal_key))
    else:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        erasure = Erasure(subject.id, config.dataset, reason, getpass.getuser(), now)
    erasure.dry_run = dry_run
    for batch in landed_batches(storage, config):
        _forget_in_batch(storage, config, subject, erasure, batch, journal_key)
    return erasure


def finish(storage: Storage, config: PerennialConfig, erasure: Erasure) -> str:
    """Turn the journal into the audit entry; returns its key."""
    erasure.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    stamp = erasure.started_at.replace(":", "").replace("+0000", "Z")
    key = catalog.key("erasure_audit", config, erasure=f"{stamp}-{erasure.id}")
    entry = {k: v for k, v in asdict(erasure).items() if k not in ("positions", "done")}
    storage.write_json(key, {**entry, "rows": erasure.rows})
    storage.delete(catalog.key("erasure_journal", config, erasure=erasure.id))
    return key


def _step(
    storage: Storage, erasure: Erasure, journal_key: str, step: str, files: list[ErasedFile]
) -> None:
    """Record a finished step (and the files it changed) in the journal."""
    erasure.files += files
    erasure.done.append(step)
    if not erasure.dry_run:
        storage.write_json(journal_key, asdict(erasure))


def _forget_in_batch(
    storage: Storage,
    config: PerennialConfig,
    subject: Subject,
    erasure: Erasure,
    batch: str,
    journal_key: str,
) -> None:
    history = [r for r in landed_history(storage, config, batch) if storage.exists(r.key)]
    held = {r.key: _matches(storage, config, subject, r.key) for r in history}
    validated = catalog.key("validated", config, batch=batch)
    if batch not in erasure.positions and storage.exists(validated):
        mask = subject.mask(storage.read_parquet(validated))
        if mask.any():
            erasure.positions[batch] = np.flatnonzero(mask.to_numpy()).tolist()
    if not any(rows for rows, _ in held.values()) and batch not in erasure.positions:
        return  # nothing of the subject here (or all of it erased by an earlier run)
    if batch not in erasure.batches:
        erasure.batches.append(batch)
    steps = [
        (LANDING, lambda: _new_revision(storage, config, batch, history, held, erasure.dry_run)),
        (PREDICTIONS, lambda: _predictions(storage, config, batch, erasure)),
        (VALIDATED, lambda: _validated(storage, config, subject, batch, erasure)),
        (QUARANTINE, lambda: _quarantined(storage, config, subject, held, erasure.dry_run)),
        (LIVE, lambda: _live(storage, config, subject, batch, held, erasure.dry_run)),
        ("destroy", lambda: _destroy(storage, held, erasure.dry_run)),
    ]
    for copy, run in steps:
        if f"{batch}:{copy}" not in erasure.done:
            _step(storage, erasure, journal_key, f"{batch}:{copy}", run())


def _matches(
    storage: Storage, config: PerennialConfig, subject: Subject, key: str
) -> tuple[int, pd.DataFrame]:
    """The subject's rows in a raw file, and the file's other rows (read as text)."""
    ext = raw_extension(key)
    frame = read_as_text(config, storage.read_bytes(key), key, ext)
    mask = subject.mask(frame)
    return int(mask.sum()), frame[~mask.to_numpy()]


def _new_revision(
    storage: Storage,
    config: PerennialConfig,
    batch: str,
    history: list[LandingRecord],
    held: dict[str, tuple[int, pd.DataFrame]],
    dry_run: bool,
) -> list[ErasedFile]:
    """The newest revision's other rows landed as the next revision, if it holds the subject."""
    if not history or not held[history[-1].key][0]:
        return []
    newest = history[-1]
    revision = max(newest.revision, _last_revision(storage, config, batch)) + 1
    data, ext = frame_bytes(held[newest.key][1], raw_extension(newest.key))
    key = landing_key(config, batch, ext, revision)
    if not dry_run:
        record = {
            "batch": batch,
            "key": key,
            "sha256": content_hash(data),
            "size_bytes": len(data),
            "source": f"perennial forget: {newest.key} without the erased rows",
            "landed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "revision": revision,
            **({"privacy": newest.privacy} if newest.privacy else {}),
        }
        storage.write_bytes(key, data, immutable=True)
        storage.write_json(
            landing_key(config, batch, LANDED_SUFFIX, revision), record, immutable=True
        )
    # Its rows of the subject are counted where its bytes are destroyed (`_destroy`).
    return [ErasedFile(LANDING, newest.key, 0, f"its other rows landed as {key}")]


def _last_revision(storage: Storage, config: PerennialConfig, batch: str) -> int:
    return len(landed_history(storage, config, batch))


def _destroy(
    storage: Storage, held: dict[str, tuple[int, pd.DataFrame]], dry_run: bool
) -> list[ErasedFile]:
    """Every landed revision that held the subject, destroyed (its record stays: no values)."""
    doomed = [(key, rows) for key, (rows, _) in held.items() if rows]
    if not dry_run:
        for key, _ in doomed:
            storage.erase(key)
    return [ErasedFile(LANDING, key, rows, "destroyed") for key, rows in doomed]


def _quarantined(
    storage: Storage,
    config: PerennialConfig,
    subject: Subject,
    held: dict[str, tuple[int, pd.DataFrame]],
    dry_run: bool,
) -> list[ErasedFile]:
    """Quarantined copies (named as the landed file) rewritten without the subject."""
    erased = []
    for landed in held:
        key = catalog.key("quarantined_file", config, file=landed.rsplit("/", 1)[-1])
        if not storage.exists(key):
            continue
        rows, others = _matches(storage, config, subject, key)
        if rows:
            if not dry_run:
                storage.rewrite_erased(key, frame_bytes(others, raw_extension(key))[0])
            erased.append(ErasedFile(QUARANTINE, key, rows, "rewritten"))
    return erased


def _predictions(
    storage: Storage, config: PerennialConfig, batch: str, erasure: Erasure
) -> list[ErasedFile]:
    key = catalog.key("predictions", config, batch=batch)
    positions = erasure.positions.get(batch)
    if not positions or not storage.exists(key):
        return []
    scored = storage.read_parquet(key)
    gone = scored["row"].isin(positions)
    if not gone.any():
        return []
    kept = scored[~gone].copy()
    # Each kept row's position in the validated batch once the erased rows are out of it.
    kept["row"] = kept["row"] - np.searchsorted(np.sort(positions), kept["row"].to_numpy())
    if not erasure.dry_run:
        storage.rewrite_erased(key, _parquet(kept))
    return [ErasedFile(PREDICTIONS, key, int(gone.sum()), "rewritten")]


def _validated(
    storage: Storage, config: PerennialConfig, subject: Subject, batch: str, erasure: Erasure
) -> list[ErasedFile]:
    """The validated batch without the subject; its summary now speaks of the newest landed
    revision, so the gate does not run again on what it already passed."""
    key, summary_key = (
        catalog.key(e, config, batch=batch) for e in ("validated", "validated_summary")
    )
    if batch not in erasure.positions or not storage.exists(key):
        return []
    frame = storage.read_parquet(key)
    mask = subject.mask(frame)
    if not erasure.dry_run:
        storage.rewrite_erased(key, _parquet(frame[~mask.to_numpy()]))
        newest = landed_history(storage, config, batch)[-1]
        if storage.exists(summary_key):
            summary = storage.read_json(summary_key)
            summary.update(sha256=newest.sha256, revision=newest.revision, raw=newest.key)
            storage.write_json(summary_key, {**summary, "rows": int((~mask).sum())})
    return [ErasedFile(VALIDATED, key, len(erasure.positions[batch]), "rewritten")]


def _live(
    storage: Storage,
    config: PerennialConfig,
    subject: Subject,
    batch: str,
    held: dict[str, tuple[int, pd.DataFrame]],
    dry_run: bool,
) -> list[ErasedFile]:
    """Live samples of the batch's period: rows the `--where` selects, when they carry its
    columns (a key column does)."""
    folder = catalog.key("live_folder", config, batch=batch)
    erased = []
    for key in storage.list(folder):
        frame = storage.read_parquet(key)
        mask = subject.mask(frame)
        if mask.any():
            if not dry_run:
                storage.rewrite_erased(key, _parquet(frame[~mask.to_numpy()]))
            erased.append(ErasedFile(LIVE, key, int(mask.sum()), "rewritten"))
    return erased


def _parquet(frame: pd.DataFrame) -> bytes:
    return frame_bytes(frame, ".parquet")[0]


def _from_json(raw: dict[str, Any]) -> Erasure:
    files = [ErasedFile(**f) for f in raw.pop("files", [])]
    return Erasure(**raw, files=files)
