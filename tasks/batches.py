"""Batch ids and the time periods they stand for (`2013-01` for a month, `2013-01-05` for a day,
`2013-W05` for an ISO week), in the dataset's time zone."""

from __future__ import annotations

import re
from datetime import date

import pandas as pd

from tasks.config import TimeConfig


class BatchIdError(ValueError):
    """A batch id or range that does not match the dataset's batch period."""


# What any batch id may contain, checked before parsing: no '/', '.', '..' or absolute paths
# can reach a storage key, whatever the period.
BATCH_CHARACTERS = re.compile(r"[0-9]{4}-[0-9W]{2,3}(-[0-9]{2})?")


def check_batch(batch: str, time: TimeConfig) -> str:
    """`batch` if it is a well-formed id of the dataset's period; BatchIdError otherwise."""
    period_bounds(batch, time)
    return batch


def period_bounds(batch: str, time: TimeConfig) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Start (inclusive) and end (exclusive) of a batch, as tz-aware timestamps. Also the check
    of every batch id that arrives from outside: only a well-formed id of the period passes."""
    if not isinstance(batch, str) or not BATCH_CHARACTERS.fullmatch(batch):
        raise BatchIdError(
            f"batch {str(batch)[:40]!r} is not a {time.batch_period} id ({example(time)}): "
            "letters, digits and '-' only, no paths"
        )
    try:
        if time.batch_period == "month":
            start = pd.Timestamp(date.fromisoformat(f"{batch}-01"))
            end = start + pd.DateOffset(months=1)
        elif time.batch_period == "day":
            start = pd.Timestamp(date.fromisoformat(batch))
            end = start + pd.Timedelta(days=1)
        else:
            year, week = batch.split("-W")
            start = pd.Timestamp(date.fromisocalendar(int(year), int(week), 1))
            end = start + pd.Timedelta(days=7)
    except ValueError:
        raise BatchIdError(
            f"batch {batch!r} is not a {time.batch_period} id ({example(time)})"
        ) from None
    if batch_id(start, time) != batch:
        raise BatchIdError(f"batch {batch!r} is not written as {example(time)}")
    return start.tz_localize(time.timezone), end.tz_localize(time.timezone)


def example(time: TimeConfig) -> str:
    return {"month": "e.g. 2013-01", "day": "e.g. 2013-01-05", "week": "e.g. 2013-W05"}[
        time.batch_period
    ]


def batch_id(moment: pd.Timestamp | date, time: TimeConfig) -> str:
    if time.batch_period == "month":
        return f"{moment.year:04d}-{moment.month:02d}"
    if time.batch_period == "day":
        return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    year, week, _ = moment.isocalendar()
    return f"{year:04d}-W{week:02d}"


def batch_ids(times: pd.Series, time: TimeConfig) -> pd.Series:
    """The batch of each timestamp (tz-aware, or naive meaning UTC)."""
    local = _to_zone(times, time.timezone)
    if time.batch_period == "month":
        return local.dt.strftime("%Y-%m")
    if time.batch_period == "day":
        return local.dt.strftime("%Y-%m-%d")
    return local.dt.strftime("%G-W%V")


def _to_zone(times: pd.Series, zone: str) -> pd.Series:
    if times.dt.tz is None:
        times = times.dt.tz_localize("UTC")
    return times.dt.tz_convert(zone)


def local_times(times: pd.Series, time: TimeConfig) -> pd.Series:
    return _to_zone(times, time.timezone)


def expand_range(spec: str, time: TimeConfig) -> list[str]:
    """`2013-01..2013-03` -> the batches from first to last; `a,b,c` -> as listed."""
    if ".." not in spec:
        batches = [part.strip() for part in spec.split(",") if part.strip()]
        for batch in batches:
            period_bounds(batch, time)
        return batches
    first, last = (part.strip() for part in spec.split("..", 1))
    start, _ = period_bounds(first, time)
    end, _ = period_bounds(last, time)
    if end < start:
        raise BatchIdError(f"range {spec!r} ends before it starts")
    batches, moment = [], start.tz_localize(None)
    while moment <= end.tz_localize(None):
        batches.append(batch_id(moment, time))
        _, next_start = period_bounds(batches[-1], time)
        moment = next_start.tz_localize(None)
    return batches
