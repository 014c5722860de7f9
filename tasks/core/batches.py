"""Batch ids and the time periods they stand for (`2013-01` for a month, `2013-01-05` for a day,
`2013-W05` for an ISO week), in the dataset's time zone."""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd

from tasks.core.config_dataset import TimeConfig


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
    return _localize(start, time.timezone), _localize(end, time.timezone)


def _localize(moment: pd.Timestamp, zone: str) -> pd.Timestamp:
    # A midnight that a DST change skips (America/Sao_Paulo, 2018-11-04) starts at the first
    # instant that exists; an ambiguous one is its first occurrence, as in `parse_times`.
    return moment.tz_localize(zone, ambiguous=True, nonexistent="shift_forward")


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
    """The batch of each timestamp (tz-aware, or naive meaning the dataset's zone)."""
    local = _to_zone(times, time.timezone)
    pattern = {"month": "%Y-%m", "day": "%Y-%m-%d"}.get(time.batch_period, "%G-W%V")
    # strftime runs in Python per value; timestamps repeat (hourly data: 7k distinct among
    # 336k rows), so format each distinct one once.
    codes, distinct = pd.factorize(local)  # a missing time gets code -1
    ids = np.append(pd.DatetimeIndex(distinct).strftime(pattern).to_numpy(dtype=object), np.nan)
    return pd.Series(ids[codes], index=times.index, dtype=object)  # -1: the trailing NaN


def _to_zone(times: pd.Series, zone: str) -> pd.Series:
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        times = parse_times(times, zone)
    return times.dt.tz_convert(zone)


def local_times(times: pd.Series, time: TimeConfig) -> pd.Series:
    """Timestamps in the dataset's zone, from parsed or raw values (see `parse_times`)."""
    return _to_zone(times, time.timezone)


# An ISO 8601 offset (or Z) after a time of day: such a value names its own instant. (After a
# time only: the "-01" that ends `2012-01-01` is a day, not an offset.)
OFFSET = re.compile(
    r"[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]+)?)?\s*(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)\s*$"
)


def parse_times(values: pd.Series, zone: str) -> pd.Series:
    """Raw time values as tz-aware timestamps in `zone`; unparseable ones become NaT.

    A value with an offset (`2013-01-01T10:00:00Z`, `...+01:00`) keeps its instant. A value
    without one (`2012/01/01`, `2012-01-01 13:00`, a naive datetime) is a wall-clock time in
    `zone`, the dataset's `time.timezone`: reading it as UTC put the first day of every month
    in the previous month west of Greenwich. At DST changes a wall-clock time that does not
    exist moves forward to the first one that does, and one that occurs twice is the first.
    The raw values are never rewritten: callers derive what they need from this."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert(zone)
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return _localize_naive(values, zone)
    plain = values.reset_index(drop=True)  # positions, whatever the caller's index
    if pd.api.types.is_numeric_dtype(plain.dtype) and (plain.dropna() % 1 == 0).all():
        # A survey year (1994) read as a number: as text it is 1994-01-01; pandas 4 would read
        # the number itself as nanoseconds since 1970 (deprecated in pandas 3).
        plain = plain.astype("Int64").astype("string")
    has_offset = plain.astype("string").str.contains(OFFSET, na=False).to_numpy()
    naive = pd.to_datetime(plain[~has_offset], errors="coerce", format="ISO8601")
    local = _localize_naive(naive, zone)
    if not has_offset.any():
        return local.set_axis(values.index)
    aware = pd.to_datetime(plain[has_offset], errors="coerce", format="ISO8601", utc=True)
    parts = [aware.dt.tz_convert(zone)] + ([local] if len(local) else [])
    return pd.concat(parts).sort_index().set_axis(values.index)


def _localize_naive(naive: pd.Series, zone: str) -> pd.Series:
    first = np.ones(len(naive), dtype=bool)  # of two wall-clock times (DST ends), the first
    return naive.dt.tz_localize(zone, ambiguous=first, nonexistent="shift_forward")


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
