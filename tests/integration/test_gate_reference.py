"""The reference checks on the real year: every month of 2013 passes the committed suite
(drafted from January-March), and the same month made wrong in one way does not."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.data.parse import typed_frame
from tasks.data.raw_files import read_raw
from tasks.data.source import extract_from_source
from tasks.data.validate import check_expectations
from tests.conftest import FLIGHTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MONTHS = [f"2013-{month:02d}" for month in range(1, 13)]


def month(batch: str) -> pd.DataFrame:
    data, ext, _ = extract_from_source(load_config(FLIGHTS), batch)
    return read_raw(data, ext)


def blocking(frame: pd.DataFrame, batch: str) -> list[str]:
    config = load_config(FLIGHTS)
    outcomes, _ = check_expectations(typed_frame(frame, config), config, batch)
    return [o.describe() for o in outcomes if not o.success and o.severity == "critical"]


@pytest.mark.parametrize("batch", MONTHS)
def test_every_real_month_passes_against_a_january_to_march_reference(batch: str) -> None:
    assert blocking(month(batch), batch) == []


def test_the_seasons_warn_but_a_unit_change_in_a_seasonal_column_fails() -> None:
    config = load_config(FLIGHTS)
    july = month("2013-07")
    outcomes, _ = check_expectations(typed_frame(july, config), config, "2013-07")
    warned = {(o.expectation, o.column) for o in outcomes if not o.success}
    assert ("reference_median", "temp") in warned  # July is 40 F warmer than the reference
    dew_celsius = july.assign(dewp=((july["dewp"] - 32) * 5 / 9).round(2))
    failed = blocking(dew_celsius, "2013-07")
    assert len(failed) == 1 and "median of temp - dewp" in failed[0], failed
