"""Drafting rules of the suite (`tasks/data/suite.py`) that need no Great Expectations run."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.data.suite import season_warning, target_columns, widened_range
from tests.conftest import FLIGHTS


@pytest.mark.parametrize(
    ("low", "high", "lower", "upper"),
    [
        (17.0, 4983.0, 0.0, 9966.0),  # never negative in the reference: stays >= 0
        (0.0, 23.0, 0.0, 46.0),
        (-9.9, 60.0, -79.8, 129.9),  # crosses zero already: widened both ways
        (-40.0, -5.0, -80.0, 0.0),  # never positive: stays <= 0
        (5.0, 5.0, 0.0, 10.0),
    ],
)
def test_ranges_widen_by_magnitude_but_never_across_zero(
    low: float, high: float, lower: float, upper: float
) -> None:
    assert widened_range(low, high) == (lower, upper)


def test_the_target_source_columns_come_from_the_column_and_the_expression() -> None:
    config = load_config(FLIGHTS)
    assert target_columns(config, ["arr_delay", "carrier"]) == ["arr_delay"]
    config.target.expression = "(arr_delay > 15) | (dep_delay > 60)"
    assert target_columns(config, ["dep_delay", "arr_delay"]) == ["arr_delay", "dep_delay"]
    config.target.expression = "`arr delay` > 15"  # not Python syntax: the column alone
    assert target_columns(config, ["arr_delay"]) == ["arr_delay"]


def test_a_reference_shorter_than_a_year_draws_a_season_warning() -> None:
    config = load_config(FLIGHTS)
    hours = pd.date_range("2013-01-01 05:00", "2013-12-31 23:00", freq="h", tz="UTC")
    year = pd.DataFrame({"time_hour": hours.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert season_warning([year], config) is None
    assert season_warning([year.head(24 * 180), year.tail(24 * 180)], config) is None
    warning = season_warning([year.head(24 * 89)], config)
    assert warning is not None and "2.9 months (2013-01-01..2013-03-31)" in warning, warning
    assert "less than a year" in warning
