"""Drift that makes sense: features derived from the time column are left out by default (one
month against a year of reference always 'drifts' in them), and a labelled batch's positive rate
is compared with the reference's (label drift), in the verdict and in the event payload."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_drift import DriftConfig
from tasks.watch.profile import ALERT, OK, build_profile, compare, unmonitored

ROWS = 5_000


@pytest.fixture
def config(home: Path) -> PerennialConfig:
    return load_config()


def inputs(config: PerennialConfig, seed: int, one_time_value: bool = False) -> pd.DataFrame:
    """Model inputs shaped like the flights features; with `one_time_value`, every time-derived
    feature holds a single value, as in one month against a year-long reference."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(50, 10, ROWS) for c in config.features.numeric})
    for column in config.features.time:
        frame[column] = 3.0 if one_time_value else rng.integers(1, 29, ROWS).astype(float)
    for column in config.features.categorical:
        frame[column] = rng.choice(["a", "b", "c"], ROWS)
    return frame.astype(dict.fromkeys(config.features.categorical, object))


def labels(rate: float, seed: int) -> pd.Series:
    return pd.Series((np.random.default_rng(seed).random(ROWS) < rate).astype(int))


def profile_of(config: PerennialConfig) -> dict:
    reference = inputs(config, seed=1)
    return build_profile(reference, labels(0.2, 1), np.full(ROWS, 0.2), config, "1")


def test_time_features_are_not_monitored_unless_included(config: PerennialConfig) -> None:
    assert config.features.time, "the demo config derives features from the time column"
    profile = profile_of(config)
    month = inputs(config, seed=2, one_time_value=True)
    scores = np.full(ROWS, 0.2)

    default = compare(profile, "b", month, scores, None, config.drift, exclude=unmonitored(config))
    assert not set(config.features.time) & set(default.psi), default.psi
    assert default.status == OK, default.reasons

    config.drift.include_time_features = True
    included = compare(profile, "b", month, scores, None, config.drift, exclude=unmonitored(config))
    assert set(config.features.time) <= set(included.drifted_features)
    assert included.status == ALERT


def test_configured_exclusions_still_apply_beside_the_time_features(
    config: PerennialConfig,
) -> None:
    config.drift.exclude = [config.features.numeric[0]]
    assert unmonitored(config) == [config.features.numeric[0], *config.features.time]


def test_label_drift_alerts_and_is_in_the_event_payload(config: PerennialConfig) -> None:
    profile = profile_of(config)
    batch = inputs(config, seed=3)
    scores = np.full(ROWS, 0.2)
    exclude = unmonitored(config)

    steady = compare(profile, "b", batch, scores, labels(0.21, 3), config.drift, exclude=exclude)
    assert steady.status == OK, steady.reasons
    assert steady.label is not None and abs(steady.label.shift) < 0.05

    late = compare(profile, "b", batch, scores, labels(0.45, 3), config.drift, exclude=exclude)
    assert late.status == ALERT
    assert late.label is not None
    assert late.label.batch_rate == pytest.approx(0.45, abs=0.02)
    assert late.label.reference_rate == pytest.approx(0.2, abs=0.02)
    assert any(reason.startswith("label drift") for reason in late.reasons), late.reasons
    payload = late.event_payload()
    assert payload["label"]["shift"] == pytest.approx(late.label.shift)

    lenient = DriftConfig(label_shift_alert=0.5)
    assert (
        compare(profile, "b", batch, scores, labels(0.45, 3), lenient, exclude=exclude).status == OK
    )
