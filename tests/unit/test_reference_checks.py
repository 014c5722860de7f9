"""The reference profile and its checks, on small frames made for each rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.data.reference_checks import (
    LABEL_RATE,
    MEDIAN,
    NULL_SHARE,
    OUTLIERS,
    PROFILE_KEY,
    RELATION,
    RELATION_GAP,
    check_reference,
    draft_profile,
)
from tests.conftest import FLIGHTS


@pytest.fixture
def config() -> PerennialConfig:
    base = load_config(FLIGHTS)
    features = base.features.model_copy(
        update={"numeric": ["temp", "dewp", "pressure", "distance"], "categorical": ["carrier"]}
    )
    validation = base.validation.model_copy(update={"seasonal": ["temp", "dewp"]})
    return base.model_copy(update={"features": features, "validation": validation})


def batch(seed: int, rows: int = 2000, warmer: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    temp = rng.normal(40 + warmer, 10, rows)
    return pd.DataFrame(
        {
            "temp": temp,
            "dewp": temp - rng.exponential(8, rows) * (rng.random(rows) > 0.05),
            "pressure": rng.normal(1015, 8, rows),
            "distance": rng.integers(100, 2500, rows).astype(float),
            "carrier": rng.choice(["AA", "B6", "UA"], rows),
            "arr_delay": rng.normal(0, 20, rows),
        }
    )


def failures(frame: pd.DataFrame, config: PerennialConfig, reference: list[pd.DataFrame]) -> set:
    meta = {PROFILE_KEY: draft_profile(reference, config), "reference_batches": ["a", "c"]}
    return {
        (o.expectation, o.column, o.severity)
        for o in check_reference(frame, meta, config, "2013-05")
        if not o.success
    }


@pytest.fixture
def reference() -> list[pd.DataFrame]:
    return [batch(seed) for seed in range(3)]


def test_a_batch_like_the_reference_passes_and_seasons_only_warn(config, reference) -> None:
    assert failures(batch(7), config, reference) == set()
    summer = failures(batch(8, warmer=35), config, reference)
    assert summer == {(MEDIAN, "temp", "warning"), (MEDIAN, "dewp", "warning")}


def test_only_binding_relations_are_kept(config, reference) -> None:
    relations = draft_profile(reference, config)["relations"]
    # dew point touches temperature; pressure is above temperature only by magnitude
    assert [(r["greater"], r["lesser"]) for r in relations] == [("temp", "dewp")]


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (lambda f: f.assign(pressure=np.nan), (NULL_SHARE, "pressure")),
        (
            lambda f: f.assign(distance=f["distance"].where(f.index >= 20, f["distance"] * 1e3)),
            (OUTLIERS, "distance"),
        ),
        (lambda f: f.assign(arr_delay=-5.0), (LABEL_RATE, "arr_delay")),
        (lambda f: f.assign(distance=f["distance"] * 1.609), (MEDIAN, "distance")),
        (lambda f: f.assign(temp=(f["temp"] - 32) * 5 / 9), (RELATION, "temp, dewp")),
        (lambda f: f.assign(dewp=(f["dewp"] - 32) * 5 / 9), (RELATION_GAP, "temp, dewp")),
    ],
    ids=["empty column", "1% x1000", "one label", "km", "temp in C", "dewp in C"],
)
def test_each_fault_fails_critically_with_its_rule(config, reference, fault, expected) -> None:
    found = failures(fault(batch(7)), config, reference)
    assert (*expected, "critical") in found, found


def test_the_message_names_column_statistic_value_and_ranges(config, reference) -> None:
    meta = {PROFILE_KEY: draft_profile(reference, config), "reference_batches": ["2013-01"]}
    frame = batch(7).assign(pressure=np.nan)
    (failed,) = [o for o in check_reference(frame, meta, config, "2013-05") if not o.success]
    assert failed.message.startswith("pressure: null share 1 outside the allowed [0, 0.05];")
    assert "the reference batches (2013-01..2013-01) ranged 0 to 0" in failed.message
    assert "perennial validate --profile 2013-01..2013-05" in failed.message


def test_the_margin_is_configurable(config, reference) -> None:
    frame = batch(7).assign(distance=lambda f: f["distance"] * 1.609)
    loose = config.model_copy(
        update={"validation": config.validation.model_copy(update={"reference_margin": 5.0})}
    )
    assert (MEDIAN, "distance", "critical") not in failures(frame, loose, reference)


def test_unlabelled_batches_are_not_judged_on_labels(config, reference) -> None:
    frame = batch(7).assign(arr_delay=np.nan)
    assert failures(frame, config, reference) == set()


def test_no_profile_no_checks(config) -> None:
    assert check_reference(batch(1), {}, config, "2013-05") == []


def test_with_fewer_than_three_reference_batches_medians_only_warn(config, reference) -> None:
    frame = batch(7).assign(distance=lambda f: f["distance"] * 1.609)
    assert (MEDIAN, "distance", "warning") in failures(frame, config, reference[:2])
    assert (MEDIAN, "distance", "critical") in failures(frame, config, reference)
