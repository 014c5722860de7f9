import pandas as pd
import pytest

from tasks.core.batches import (
    BatchIdError,
    batch_ids,
    check_batch,
    expand_range,
    period_bounds,
)
from tasks.core.config_dataset import TimeConfig

MONTH = TimeConfig(column="t", batch_period="month", timezone="America/New_York")


def test_month_bounds_are_in_the_dataset_zone() -> None:
    start, end = period_bounds("2013-12", MONTH)
    assert str(start) == "2013-12-01 00:00:00-05:00"
    assert str(end) == "2014-01-01 00:00:00-05:00"


def test_batch_ids_follow_the_zone() -> None:
    times = pd.Series(pd.to_datetime(["2013-02-01T03:00:00Z", "2013-02-01T06:00:00Z"], utc=True))
    assert batch_ids(times, MONTH).tolist() == ["2013-01", "2013-02"]


def test_ranges_and_lists() -> None:
    assert expand_range("2013-11..2014-02", MONTH) == ["2013-11", "2013-12", "2014-01", "2014-02"]
    assert expand_range("2013-01, 2013-03", MONTH) == ["2013-01", "2013-03"]
    week = TimeConfig(column="t", batch_period="week")
    assert expand_range("2013-W52..2014-W02", week) == ["2013-W52", "2014-W01", "2014-W02"]
    day = TimeConfig(column="t", batch_period="day")
    assert expand_range("2013-02-27..2013-03-01", day) == ["2013-02-27", "2013-02-28", "2013-03-01"]


@pytest.mark.parametrize("bad", ["2013-1", "2013-13", "Jan", "2013-01-05", "2013-03..2013-01"])
def test_malformed_batches_are_refused(bad: str) -> None:
    with pytest.raises(BatchIdError):
        expand_range(bad, MONTH)


@pytest.mark.parametrize(
    "hostile",
    ["../2013-01", "2013-01/../../x", "/etc/passwd", "2013-01.", "..", "2013-01\n", "", "2013-1"],
)
def test_hostile_batch_ids_are_refused(hostile: str) -> None:
    with pytest.raises(BatchIdError):
        check_batch(hostile, MONTH)


def test_well_formed_ids_of_every_period_pass() -> None:
    assert check_batch("2013-01", MONTH) == "2013-01"
    assert check_batch("2013-W05", TimeConfig(column="t", batch_period="week")) == "2013-W05"
    assert check_batch("2013-01-05", TimeConfig(column="t", batch_period="day")) == "2013-01-05"


def test_missing_times_have_no_batch_even_when_all_are_missing() -> None:
    times = pd.Series(pd.to_datetime(["2013-01-05", None], utc=True), index=[7, 3])
    ids = batch_ids(times, MONTH)
    assert ids.iloc[0] == "2013-01" and pd.isna(ids.iloc[1])
    assert list(ids.index) == [7, 3]
    assert batch_ids(pd.Series(pd.to_datetime([None, None], utc=True)), MONTH).isna().all()


@pytest.mark.filterwarnings("error")
def test_a_year_read_as_a_number_is_its_first_of_january() -> None:
    # configs/gss.yaml: the survey year is the time column (1994 -> batch 1994-01). Read as text,
    # not as a number, which pandas deprecates (pandas 4 reads it as nanoseconds since 1970).
    for years in (pd.Series([1994, 2006]), pd.Series([1994.0, None])):
        ids = batch_ids(years, TimeConfig(column="year", batch_period="month", timezone="UTC"))
        assert ids.iloc[0] == "1994-01"
    assert batch_ids(pd.Series([2006]), MONTH).tolist() == ["2006-01"]
