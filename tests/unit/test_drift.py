"""The drift monitor's plain functions: binning, PSI, the reference profile and the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_drift import DriftConfig
from tasks.core.storage import Storage
from tasks.watch.drift import plot_psi, table_rows
from tasks.watch.profile import (
    ALERT,
    OK,
    PREDICTION,
    TOO_FEW_ROWS,
    WARN,
    DriftError,
    build_profile,
    categorical_shares,
    compare,
    load_reference,
    numeric_shares,
    psi,
    quantile_edges,
    save_reference,
)

ROWS = 20_000


@pytest.fixture
def config(home: Path) -> PerennialConfig:
    return load_config()


def inputs(config: PerennialConfig, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Model inputs shaped like the flights features, `temp` shifted by `shift` degrees."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {c: rng.normal(50, 10, ROWS) for c in [*config.features.numeric, *config.features.time]}
    )
    frame["temp"] += shift
    frame.loc[rng.random(ROWS) < 0.05, "wind_gust"] = np.nan  # a feature with gaps
    frame["carrier"] = rng.choice(["UA", "B6", "EV", "DL"], ROWS, p=[0.4, 0.3, 0.2, 0.1])
    frame["origin"] = rng.choice(["EWR", "JFK", "LGA"], ROWS)
    frame["dest"] = rng.choice(["ATL", "ORD", "LAX", None], ROWS)
    return frame.astype({"carrier": object, "origin": object, "dest": object})


def scores_of(x: pd.DataFrame) -> np.ndarray:
    """A fixed 'model': a logistic function of temp, so shifting temp shifts the scores."""
    return np.asarray(1 / (1 + np.exp(-(x["temp"].to_numpy() - 50) / 10)))


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    shares = np.full(10, 0.1)
    assert psi(shares, shares) == pytest.approx(0.0)
    small = psi(shares, [0.12, 0.08, *shares[2:]])
    large = psi(shares, [0.3, 0.0, *shares[2:]])
    assert 0 < small < large
    assert np.isfinite(large)  # an empty bin is floored, not infinite


def test_quantile_bins_split_the_reference_evenly_and_give_missing_its_own_bin() -> None:
    values = np.arange(1000, dtype=float)
    edges = quantile_edges(values, 10)
    assert len(edges) == 9
    shares = numeric_shares(np.append(values, [np.nan] * 10), edges)
    assert len(shares) == 11
    assert shares[:10] == pytest.approx(np.full(10, 1000 / 1010 / 10), abs=2e-3)
    assert shares[-1] == pytest.approx(10 / 1010)
    # discrete values collapse repeated edges instead of producing empty bins
    assert quantile_edges(np.repeat([1.0, 2.0, 3.0], 100), 10) == [1.0, 2.0, 3.0]


def test_categorical_shares_put_unseen_values_in_other_and_nulls_in_missing() -> None:
    values = pd.Series(["a", "a", "b", "z", None], dtype=object)
    shares = categorical_shares(values, ["a", "b"])
    assert shares.tolist() == pytest.approx([0.4, 0.2, 0.2, 0.2])


def test_same_distribution_is_ok_and_a_shifted_feature_alerts(
    config: PerennialConfig, home: Path
) -> None:
    reference = inputs(config, seed=1)
    y = pd.Series((reference["temp"] > 55).astype(int))
    profile = build_profile(reference, y, scores_of(reference), config, "3")
    storage = Storage(home)
    save_reference(storage, config, profile)
    loaded = load_reference(storage, config, "3")
    assert loaded["version"] == "3" and set(loaded["numeric"]) >= {"temp", "day_of_week"}

    same = inputs(config, seed=2)
    report = compare(loaded, "2013-02", same, scores_of(same), None, config.drift)
    assert report.status == OK, report.reasons
    assert report.max_psi < config.drift.psi_warn

    shifted = inputs(config, seed=3, shift=15.0)
    drifted = compare(loaded, "2013-07", shifted, scores_of(shifted), None, config.drift)
    assert drifted.status == ALERT
    # the scores are a monotone function of temp: both move, nothing else does
    assert set(drifted.drifted_features) == {"temp", PREDICTION}
    assert drifted.event_payload()["batch"] == "2013-07"
    assert drifted.event_payload()["reference_version"] == "3"
    assert drifted.event_payload()["max_psi"] == pytest.approx(drifted.max_psi, abs=1e-4)
    rows = table_rows(drifted, config.drift)
    assert rows[0]["feature"] in ("temp", PREDICTION) and rows[0]["level"] == ALERT
    assert plot_psi(drifted, config.drift).startswith(b"\x89PNG")


def test_warn_level_too_few_rows_and_excluded_features(config: PerennialConfig) -> None:
    reference = inputs(config, seed=1)
    profile = build_profile(reference, np.zeros(ROWS), scores_of(reference), config, "1")
    nudged = inputs(config, seed=4, shift=4.0)
    # only `temp` moves; the scores too unless we judge features alone (exclude nothing else)
    report = compare(profile, "b", nudged, scores_of(reference), None, config.drift)
    assert report.status == WARN, report.psi
    assert report.warned_features == ["temp"]

    tight = DriftConfig(min_rows=ROWS + 1)
    assert compare(profile, "b", nudged, scores_of(nudged), None, tight).status == TOO_FEW_ROWS

    shifted = inputs(config, seed=3, shift=15.0)
    blind = DriftConfig(exclude=["temp"])
    report = compare(profile, "b", shifted, scores_of(reference), None, blind)
    assert "temp" not in report.psi and report.status == OK


def test_labels_and_a_performance_drop_are_reported(config: PerennialConfig) -> None:
    reference = inputs(config, seed=1)
    profile = build_profile(reference, np.full(ROWS, 0.0), scores_of(reference), config, "1")
    labels = pd.Series(np.ones(ROWS, dtype=int))
    report = compare(
        profile, "b", reference, scores_of(reference), labels, config.drift, 0.72, 0.61
    )
    assert report.label is not None and report.label.batch_rate == 1.0
    assert report.performance == pytest.approx({"batch": 0.61, "holdout": 0.72, "worsening": 0.11})
    assert report.status == ALERT
    # all-positive labels against an all-negative reference are label drift too
    assert report.reasons[0].startswith("label drift") and "champion AUC" in report.reasons[1]


def test_missing_reference_and_missing_columns_say_what_to_do(
    config: PerennialConfig, home: Path
) -> None:
    with pytest.raises(DriftError, match="perennial train"):
        load_reference(Storage(home), config, "9")
    reference = inputs(config, seed=1)
    profile = build_profile(reference, np.zeros(ROWS), scores_of(reference), config, "1")
    with pytest.raises(DriftError, match="temp"):
        compare(
            profile, "b", reference.drop(columns="temp"), scores_of(reference), None, DriftConfig()
        )


def test_invalid_thresholds_fail_at_load() -> None:
    with pytest.raises(ValueError, match="psi_warn"):
        DriftConfig(psi_warn=0.3, psi_alert=0.2)


# -- the judgement: performance at risk, not any feature moving ---------------------------------


def shap_importance(x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Mean |SHAP| of a real XGBoost model fitted on the numeric columns of `x`."""
    import xgboost as xgb

    numeric = x.select_dtypes("number")
    model = xgb.XGBClassifier(n_estimators=30, max_depth=3, random_state=0, n_jobs=1)
    model.fit(numeric, y)
    contributions = model.get_booster().predict(xgb.DMatrix(numeric), pred_contribs=True)
    return dict(zip(numeric.columns, np.abs(contributions[:, :-1]).mean(axis=0), strict=True))


@pytest.fixture
def weighted_profile(config: PerennialConfig) -> dict:
    reference = inputs(config, seed=1)
    y = pd.Series((reference["temp"] > 55).astype(int))  # the model uses temp, little else
    importance = shap_importance(reference, y)
    recent = [inputs(config, seed=3), inputs(config, seed=4)]
    return build_profile(
        reference, y, scores_of(reference), config, "3", None, importance, (0.70, 0.74), recent
    )


def test_a_shift_in_an_important_feature_alerts_and_in_an_unused_one_does_not(
    config: PerennialConfig, weighted_profile: dict
) -> None:
    assert weighted_profile["importance"]["temp"] > 0.9
    hot = inputs(config, seed=2, shift=8.0)
    report = compare(weighted_profile, "2013-07", hot, scores_of(hot), None, config.drift)
    assert report.status == ALERT and "weighted" in report.reasons[0], report.reasons
    # the same shift in a feature the champion does not use: reported, never alerted
    windy = inputs(config, seed=2)
    windy["pressure"] += 8.0
    quiet = compare(weighted_profile, "2013-07", windy, scores_of(windy), None, config.drift)
    assert quiet.psi["pressure"] >= config.drift.psi_alert  # it did move
    assert quiet.status == WARN and "reported only: pressure" in quiet.reasons[0], quiet.reasons


def test_a_batch_like_the_reference_batches_never_alerts(
    config: PerennialConfig, weighted_profile: dict
) -> None:
    for seed in range(5, 10):
        batch = inputs(config, seed=seed)
        report = compare(weighted_profile, "b", batch, scores_of(batch), None, config.drift)
        assert report.status == OK, report.reasons


def test_with_labels_the_holdout_interval_decides(
    config: PerennialConfig, weighted_profile: dict
) -> None:
    hot = inputs(config, seed=2, shift=8.0)  # would alert on drift alone
    within = compare(
        weighted_profile, "b", hot, scores_of(hot), None, config.drift, 0.72, labelled_value=0.705
    )
    assert within.status != ALERT, within.reasons
    assert "not below it" in within.reasons[0]
    below = compare(
        weighted_profile, "b", hot, scores_of(hot), None, config.drift, 0.72, labelled_value=0.69
    )
    assert below.status == ALERT and "below it" in below.reasons[0], below.reasons
