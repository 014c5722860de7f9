"""Timestamps without an offset are wall-clock times in the dataset's `time.timezone`; with an
offset they keep their instant. DST edges included; the validated data keeps the raw column."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.core.batches import batch_ids, parse_times, period_bounds
from tasks.core.config import load_config
from tasks.core.config_dataset import TimeConfig
from tasks.data.features import time_features
from tasks.data.parse import typed_frame

PACIFIC = TimeConfig(column="date", batch_period="month", timezone="America/Los_Angeles")


def test_dates_without_offset_fall_in_their_own_month() -> None:
    # Read as UTC, 2012/02/01 was 2012-01-31 16:00 in Seattle: every month lost its first day.
    times = pd.Series(["2012/01/31", "2012/02/01", "2012-02-01 00:30", "2012-02-29 23:59"])
    assert batch_ids(times, PACIFIC).tolist() == ["2012-01", "2012-02", "2012-02", "2012-02"]
    start, end = period_bounds("2012-02", PACIFIC)
    parsed = parse_times(times, PACIFIC.timezone)
    assert ((parsed >= start) & (parsed < end)).tolist() == [False, True, True, True]


def test_values_with_an_offset_keep_their_instant() -> None:
    times = pd.Series(["2013-02-01T03:00:00Z", "2013-02-01T12:00:00+01:00", "2013-02-01 09:00"])
    parsed = parse_times(times, PACIFIC.timezone)
    assert [str(t) for t in parsed.dt.tz_convert("UTC")] == [
        "2013-02-01 03:00:00+00:00",
        "2013-02-01 11:00:00+00:00",
        "2013-02-01 17:00:00+00:00",  # 09:00 in Seattle (UTC-8)
    ]
    assert batch_ids(times, PACIFIC).tolist() == ["2013-01", "2013-02", "2013-02"]


def test_a_day_is_not_mistaken_for_an_offset() -> None:
    parsed = parse_times(pd.Series(["2012-01-01", "2012-01-01T00:00"]), "Asia/Tokyo")
    assert [str(t) for t in parsed] == ["2012-01-01 00:00:00+09:00"] * 2


def test_naive_datetimes_and_unparseable_values() -> None:
    naive = pd.Series(pd.to_datetime(["2012-03-01 00:00"]))
    assert str(parse_times(naive, PACIFIC.timezone)[0]) == "2012-03-01 00:00:00-08:00"
    parsed = parse_times(pd.Series(["2012-03-01", "not a date", None]), PACIFIC.timezone)
    assert parsed.isna().tolist() == [False, True, True]


def test_dst_edges() -> None:
    zone = PACIFIC.timezone
    # 2013-03-10 02:30 does not exist in Seattle: it moves forward to 03:00 PDT.
    # 2013-11-03 01:30 happens twice: the first (PDT, UTC-7) is taken.
    parsed = parse_times(pd.Series(["2013-03-10 02:30", "2013-11-03 01:30"]), zone)
    assert [str(t) for t in parsed] == ["2013-03-10 03:00:00-07:00", "2013-11-03 01:30:00-07:00"]
    # Sao Paulo skipped midnight on 2018-11-04: the day still has a start, and its date lands in it.
    day = TimeConfig(column="t", batch_period="day", timezone="America/Sao_Paulo")
    start, _ = period_bounds("2018-11-04", day)
    assert str(start) == "2018-11-04 01:00:00-02:00"
    assert batch_ids(pd.Series(["2018-11-04"]), day).tolist() == ["2018-11-04"]
    assert (parse_times(pd.Series(["2018-11-04"]), day.timezone) >= start).all()


def test_index_is_kept_when_values_mix_offsets() -> None:
    times = pd.Series(["2012-01-01T00:00:00Z", "2012-01-01"], index=[7, 3])
    parsed = parse_times(times, "UTC")
    assert parsed.index.tolist() == [7, 3]
    assert parsed.tolist() == [pd.Timestamp("2012-01-01", tz="UTC")] * 2


YAML = """
dataset: seattle
source: {kind: files, path_template: "{batch}.csv"}
time: {column: date, batch_period: month, timezone: America/Los_Angeles}
target: {name: rain, column: weather, expression: "weather == 'rain'"}
features: {numeric: [wind], time: [day_of_week, day_of_month]}
validation: {suite: seattle}
"""


def test_the_suite_sees_local_times_and_features_use_the_local_day(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "seattle.yaml"
    path.write_text(YAML)
    config = load_config(path)
    raw = pd.DataFrame({"date": ["2012/02/01", "2012/02/05"], "wind": [1.0, 2.0]})
    checked = typed_frame(raw, config)
    assert [str(t) for t in checked["date"]] == [
        "2012-02-01 08:00:00+00:00",
        "2012-02-05 08:00:00+00:00",
    ]
    assert raw["date"].tolist() == ["2012/02/01", "2012/02/05"]  # the raw frame is untouched
    derived = time_features(raw, config)
    assert derived["day_of_month"].tolist() == [1.0, 5.0]
    assert derived["day_of_week"].tolist() == [2.0, 6.0]  # Wednesday, Sunday


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_flights_style_utc_stamps_are_unchanged(zone: str) -> None:
    times = pd.Series(["2013-01-01T10:00:00Z"])
    assert parse_times(times, zone)[0] == pd.Timestamp("2013-01-01 10:00", tz="UTC")
