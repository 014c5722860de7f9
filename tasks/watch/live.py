"""Live traffic: a sample of what `perennial serve` scored, written to storage as batches, and
what the monitor makes of it (drift on live traffic; the A/B arms once labels arrive).

A serving process buffers sampled rows in memory (`LiveSampler.offer`, a list append on the
request path) and a background thread writes them out every `serve.live_flush_seconds`, as soon
as `serve.live_flush_rows` are waiting, and at shutdown. Each write is one new part of its live
batch, `live/<dataset>/<model>/<batch>/<part>.parquet`: parts are never rewritten, so several
replicas (or restarts) writing the same period never overwrite each other, on disk or in S3.
A row's batch is the period (`serve.live_period`, default the dataset's) of the moment it was
received, in the dataset's time zone.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from tasks.core import catalog
from tasks.core.batches import batch_id, period_bounds
from tasks.core.config import PerennialConfig
from tasks.core.config_dataset import TimeConfig
from tasks.core.storage import Storage
from tasks.watch.profile import DriftReport

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tasks.serve.native_scoring import ServedModel

log = logging.getLogger("perennial.serve")

# Columns a live row carries besides the request's own fields.
SCORE, VERSION, ARM, REQUEST_KEY, RECEIVED_AT = (
    "served_score",
    "served_version",
    "served_alias",
    "request_key",
    "received_at",
)
MAX_KEY_CHARS = 200  # a request key is the client's text: stored, so bounded
BACKLOG_FLUSHES = 10  # unwritten rows kept while storage is down, in units of live_flush_rows


class LiveError(RuntimeError):
    """No live traffic recorded for a period (or none that can be used)."""


def live_time(config: PerennialConfig) -> TimeConfig:
    """The periods of live batches: `serve.live_period`, else the dataset's own."""
    return config.time.model_copy(
        update={"batch_period": config.serve.live_period or config.time.batch_period}
    )


def now_utc() -> datetime:
    return datetime.now(UTC)


# --- writing (the serving process) ---------------------------------------------------------


@dataclass(frozen=True)
class Sampled:
    """One sampled row as the request path keeps it, until the writer thread stores it."""

    row: BaseModel
    score: float
    version: str
    alias: str
    request_key: str | None
    received: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.row.model_dump(),
            SCORE: self.score,
            VERSION: self.version,
            ARM: self.alias,
            REQUEST_KEY: self.request_key,
            RECEIVED_AT: self.received,
        }


class LiveSampler:
    """Samples scored rows into memory and writes them to storage off the request path."""

    def __init__(
        self,
        config: PerennialConfig,
        storage: Storage,
        clock: Callable[[], datetime] = now_utc,
        seed: int | None = None,
    ) -> None:
        self.config, self.storage, self.clock = config, storage, clock
        self.rate = config.serve.live_sample_rate
        self.periods, self.zone = live_time(config), ZoneInfo(config.time.timezone)
        self._random = random.Random(seed)
        self._buffer: list[tuple[str, Sampled]] = []
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self.written: list[str] = []  # keys of the parts written, oldest first
        self.dropped = 0  # rows lost because storage stayed down (logged at ERROR)

    def offer(
        self,
        rows: Sequence[BaseModel],
        scores: np.ndarray,
        model: ServedModel,
        request_key: str | None,
    ) -> int:
        """Keep each scored row with probability `serve.live_sample_rate`; returns how many.
        Costs a few microseconds per kept row: no I/O happens here."""
        if self.rate <= 0:
            return 0
        kept = [
            i
            for i in range(len(rows))
            if self._random.random() < self.rate and finite_row(rows[i], float(scores[i]))
        ]
        if not kept:
            return 0
        received = self.clock()
        batch = batch_id(received.astimezone(self.zone), self.periods)
        key = request_key[:MAX_KEY_CHARS] if request_key is not None else None
        # Only references here: rows become dicts in the writer thread (model_dump is the cost).
        records = [
            (batch, Sampled(rows[i], float(scores[i]), model.version, model.alias, key, received))
            for i in kept
        ]
        with self._lock:
            self._buffer.extend(records)
            waiting = len(self._buffer)
        if waiting >= self.config.serve.live_flush_rows and not self._wake.is_set():
            self._wake.set()  # once: Event.set takes a lock and notifies, on every request
        return len(kept)

    @property
    def backlog(self) -> int:
        """Sampled rows waiting to be written (read without the lock: a length, for /metrics)."""
        return len(self._buffer)

    def flush(self) -> list[str]:
        """Write every buffered row, one new part per live batch; returns the keys written.
        Rows whose write fails stay buffered for the next flush (up to a bound)."""
        with self._lock:
            taken, self._buffer = self._buffer, []
        if not taken:
            return []
        by_batch: dict[str, list[Sampled]] = {}
        for batch, record in taken:
            by_batch.setdefault(batch, []).append(record)
        written: list[str] = []
        failed: list[tuple[str, Sampled]] = []
        for batch, records in by_batch.items():
            key = catalog.key("live_part", self.config, batch=batch, part=part_name(self.clock()))
            try:
                frame = live_frame([record.as_dict() for record in records], self.config)
                self.storage.write_parquet(key, frame)
                written.append(key)
            except Exception:
                log.exception("writing %d live rows of %s to %s failed", len(records), batch, key)
                failed.extend((batch, record) for record in records)
        if failed:
            self._keep_unwritten(failed)
        self.written.extend(written)
        return written

    def _keep_unwritten(self, failed: list[tuple[str, Sampled]]) -> None:
        bound = BACKLOG_FLUSHES * self.config.serve.live_flush_rows
        with self._lock:
            self._buffer = failed + self._buffer
            excess = len(self._buffer) - bound
            if excess > 0:  # storage has been down for long: bound the memory, say so
                self._buffer = self._buffer[excess:]
                self.dropped += excess
                log.error("storage unavailable: %d oldest live rows dropped", excess)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.serve.live_flush_seconds)
            self._wake.clear()
            self.flush()

    def start(self) -> None:
        if self.rate > 0:
            self._thread = threading.Thread(target=self._loop, name="live-sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and write what is left: nothing sampled is lost on a clean stop."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.flush()


def finite_row(row: BaseModel, score: float) -> bool:
    """A row fit to be kept: its score and every number in it finite. The request schema already
    refuses NaN and infinity; this keeps them out of live batches (and so out of drift and A/B
    numbers) whatever reaches the sampler."""
    if not math.isfinite(score):
        return False
    return all(math.isfinite(value) for value in vars(row).values() if isinstance(value, float))


def part_name(moment: datetime) -> str:
    """A part's name: when it was written (so parts sort in time), and a random suffix so that
    two processes writing the same batch in the same microsecond still write two parts."""
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:12]}"


def live_frame(records: list[dict[str, Any]], config: PerennialConfig) -> pd.DataFrame:
    """Buffered records as a frame that stores in Parquet: times as UTC (naive ones are UTC,
    as in batch features), key columns as text (clients may send 12 or "12"; the join with
    the labels converts them to the labelled batch's types)."""
    frame = pd.DataFrame.from_records(records)
    frame[RECEIVED_AT] = pd.to_datetime(frame[RECEIVED_AT], utc=True)
    if config.time.column in frame.columns:
        frame[config.time.column] = pd.to_datetime(frame[config.time.column], utc=True)
    for column in config.validation.key_columns:
        if column in frame.columns and column != config.time.column:
            frame[column] = frame[column].map(lambda value: None if value is None else str(value))
    return kept_out(frame, config)


def kept_out(frame: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    """A declared personal key column as the landed data holds it (hashed with the same key, so
    that live rows still join their labels; dropped if declared `drop`): a client sends the
    value itself, which is never stored."""
    from tasks.data.privacy import hash_values, privacy_key

    declared = {c: a for c, a in config.privacy.columns.items() if c in frame.columns}
    frame = frame.drop(columns=[c for c, a in declared.items() if a == "drop"])
    for column in (c for c, a in declared.items() if a == "hash"):
        frame[column] = hash_values(privacy_key(config), frame[column])
    return frame


# --- reading (the monitor) -----------------------------------------------------------------


def read_live(storage: Storage, config: PerennialConfig, batch: str) -> pd.DataFrame:
    """Every recorded part of a live batch, concatenated (empty frame: nothing recorded)."""
    folder = catalog.key("live_folder", config, batch=batch)
    parts = [key for key in storage.list(folder) if key.endswith(".parquet")]
    if not parts:
        return pd.DataFrame()
    return pd.concat([storage.read_parquet(key) for key in parts], ignore_index=True)


def live_batches_within(config: PerennialConfig, batch: str) -> list[str]:
    """Live batches that overlap a dataset batch: the same id when the periods are the same,
    each day of a month when live batches are days, the month of a week when they are months."""
    start, end = period_bounds(batch, config.time)
    periods, found = live_time(config), []
    day = start.tz_localize(None)
    while day < end.tz_localize(None):
        candidate = batch_id(day, periods)
        if candidate not in found:
            found.append(candidate)
        day += timedelta(days=1)
    return found


def measure_live(
    storage: Storage,
    config: PerennialConfig,
    batch: str,
    profile: dict[str, Any],
    model: Any,
    holdout_value: float | None = None,
) -> DriftReport:
    """Drift of a live batch against the champion's reference profile, as for a landed batch:
    the same features, the same bins, the same PSI; the prediction PSI uses the champion's
    scores of the rows (some were served by the challenger)."""
    from tasks.data.features import model_inputs
    from tasks.watch.profile import compare, unmonitored
    from tasks.watch.task_metrics import champion_scores

    frame = read_live(storage, config, batch)
    if frame.empty:
        raise LiveError(
            f"no live traffic recorded for {batch} under "
            f"{catalog.key('live_folder', config, batch=batch)}: is `perennial serve` running "
            "with serve.live_sample_rate above 0?"
        )
    x = model_inputs(frame, config)
    return compare(
        profile,
        batch,
        x,
        champion_scores(model, x, config),
        None,
        config.drift,
        holdout_value,
        exclude=unmonitored(config),  # time-derived features, as for batches
        config=config,
    )
