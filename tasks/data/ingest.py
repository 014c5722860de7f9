"""Ingest: land a batch, as it arrived, as an immutable file under `landing/<dataset>/`.

Landing is idempotent: the same bytes twice is a no-op; different bytes for a batch already
landed are refused (raw data is never overwritten), unless the gate quarantined the batch: then
the corrected file becomes a new revision (`<batch>.r2.csv`, ...) beside the first, which stays.
Each landed file has a record (`landing/<dataset>/<batch>.landed.json`, `<batch>.r2.landed.json`,
...) with its content hash, size, source and time; `landed_record` gives the newest. The bytes
come from a file, or from the dataset's source (`tasks/data/source.py`); the formats they may be
in are `tasks/data/raw_files.py`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.batches import expand_range, period_bounds
from tasks.core.catalog import LANDED_SUFFIX, landing_folder, landing_key, quarantine_reason_key
from tasks.core.config import PerennialConfig
from tasks.core.storage import ImmutableKeyError, Storage, content_hash
from tasks.data.privacy import without_personal_columns
from tasks.data.raw_files import IngestError, raw_extension
from tasks.data.source import extract_from_source, read_source_file


class NotLandedError(IngestError):
    """A batch (or any batch at all) was asked for before it was landed."""


@dataclass(frozen=True)
class LandingRecord:
    batch: str
    key: str
    sha256: str
    size_bytes: int
    source: str
    landed_at: str
    status: str  # "landed", "revised" (a new revision of a quarantined batch) or "unchanged"
    revision: int = 1
    # Set when declared personal columns were dropped or hashed before landing (tasks/data/
    # privacy.py): `sha256` is then that of the bytes kept, `arrived_sha256` of those that came.
    arrived_sha256: str = ""
    privacy: dict[str, str] = field(default_factory=dict)


def landed_history(storage: Storage, config: PerennialConfig, batch: str) -> list[LandingRecord]:
    """Every landed revision of a batch, oldest first (empty if never landed)."""
    history: list[LandingRecord] = []
    while storage.exists(key := landing_key(config, batch, LANDED_SUFFIX, len(history) + 1)):
        history.append(LandingRecord(**{**storage.read_json(key), "status": "unchanged"}))
    return history


def landed_record(storage: Storage, config: PerennialConfig, batch: str) -> LandingRecord | None:
    """The newest landed revision of a batch, or None."""
    history = landed_history(storage, config, batch)
    return history[-1] if history else None


def is_quarantined(storage: Storage, config: PerennialConfig, record: LandingRecord) -> bool:
    """Whether the gate quarantined this very revision (its hash is in the reason file)."""
    key = quarantine_reason_key(config, record.batch)
    return storage.exists(key) and storage.read_json(key).get("sha256") == record.sha256


def land_batch(
    storage: Storage, config: PerennialConfig, batch: str, data: bytes, ext: str, source: str
) -> LandingRecord:
    """Land raw bytes for a batch: immutable, idempotent, refused when the batch differs
    unless the batch is quarantined (then the data lands as the next revision). Declared
    personal columns are dropped or hashed first: their values are never kept."""
    period_bounds(batch, config.time)  # rejects a malformed batch id before anything is written
    kept = without_personal_columns(config, data, f"{batch}{ext}", ext)
    arrived = content_hash(data) if kept.actions else ""
    data, ext, digest = kept.data, kept.ext, content_hash(kept.data)
    existing = landed_record(storage, config, batch)
    revision = 1
    if existing is not None:
        if existing.sha256 == digest:
            return existing
        if not is_quarantined(storage, config, existing):
            raise IngestError(
                f"batch {batch} of {config.dataset} is already landed as {existing.key} "
                f"(sha256 {existing.sha256[:12]}) and this data differs (sha256 {digest[:12]}); "
                "raw batches are never overwritten, and this batch is not quarantined, so it "
                "takes no corrected revision; land the new data under another batch id"
            )
        revision = existing.revision + 1
    record = LandingRecord(
        batch=batch,
        key=landing_key(config, batch, ext, revision),
        sha256=digest,
        size_bytes=len(data),
        source=source,
        landed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        status="landed" if revision == 1 else "revised",
        revision=revision,
        arrived_sha256=arrived,
        privacy=kept.actions,
    )
    # A record as before unless something was rewritten (only then the privacy fields).
    optional = ("arrived_sha256", "privacy")
    fields = {k: v for k, v in asdict(record).items() if k != "status" and (v or k not in optional)}
    record_key = landing_key(config, batch, LANDED_SUFFIX, revision)
    try:
        # Both writes are write-once in the storage itself (a hard link locally, a conditional
        # put on S3): of two ingests racing past the check above, exactly one lands this
        # revision, and its record is the one that describes the bytes on disk.
        storage.write_bytes(record.key, data, immutable=True)
        storage.write_json(record_key, fields, immutable=True)
    except ImmutableKeyError:
        winner = storage.read_json(record_key) if storage.exists(record_key) else None
        if winner is not None and winner.get("sha256") == digest:  # same bytes: idempotent
            return LandingRecord(**{**winner, "status": "unchanged"})
        raise IngestError(
            f"batch {batch} of {config.dataset}: another ingest landed different data as "
            f"revision {revision} at the same moment, and raw batches are never overwritten; "
            f"check which file is right (see {record_key}) and land the other under another "
            "batch id"
        ) from None
    return record


def landed_batches(storage: Storage, config: PerennialConfig) -> list[str]:
    """Batch ids landed so far (revisions of a batch count once)."""
    keys = storage.list(landing_folder(config))
    names = [
        k.rsplit("/", 1)[-1].removesuffix(LANDED_SUFFIX) for k in keys if k.endswith(LANDED_SUFFIX)
    ]
    return sorted(name for name in names if not re.search(r"\.r\d+$", name))


def newest_landed(storage: Storage, config: PerennialConfig) -> str:
    """The newest landed batch (what a scheduled run without a batch looks at)."""
    landed = landed_batches(storage, config)
    if not landed:
        raise NotLandedError(f"no landed batch of {config.dataset}: ingest one")
    return landed[-1]


@task(name="newest-landed-batch", cache_policy=NO_CACHE)
def newest_landed_task(config: PerennialConfig) -> str:
    from tasks.core.storage import open_storage

    return newest_landed(open_storage(config.home), config)


@task(name="choose-batches", cache_policy=NO_CACHE)
def choose_batches_task(config: PerennialConfig, batches: str, reason: str) -> list[str]:
    """The batches a run uses: the range or list `batches` (each id checked), or, when empty,
    every landed batch."""
    from tasks.core.run_logging import run_logger
    from tasks.core.storage import open_storage

    chosen = (
        expand_range(batches, config.time)
        if batches
        else landed_batches(open_storage(config.home), config)
    )
    run_logger().info("%s on %s (%s)", config.dataset, ",".join(chosen), reason)
    return chosen


def land_from(config: PerennialConfig, batch: str, source_file: str | None) -> LandingRecord:
    """Land a batch from `source_file`, or from the dataset's configured source."""
    from tasks.core.storage import open_storage

    if source_file:
        path = Path(source_file)
        data, ext, origin = read_source_file(path), raw_extension(path.name), str(path.resolve())
    else:
        data, ext, origin = extract_from_source(config, batch)
    return land_batch(open_storage(config.home), config, batch, data, ext, origin)


@task(name="land-batch", cache_policy=NO_CACHE)
def land_batch_task(config: PerennialConfig, batch: str, source_file: str | None) -> LandingRecord:
    return land_from(config, batch, source_file)
