"""The gate's label checks by task: a regression label is checked as the features are (range,
spread, outliers), a multiclass label by its class shares, and a class outside
`target.classes` is a refusal line that names the column, the count and the share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_dataset import TargetConfig
from tasks.data.label_checks import (
    CLASS_SHARE,
    LABEL_MEDIAN,
    LABEL_OUTLIERS,
    LABEL_SPREAD,
    UNKNOWN_CLASS,
)
from tasks.data.reference_checks import PROFILE_KEY, check_reference, draft_profile
from tests.conftest import FLIGHTS

BANDS = ["on_time", "late", "very_late"]


def with_target(target: TargetConfig, metric: str) -> PerennialConfig:
    base = load_config(FLIGHTS)
    features = base.features.model_copy(
        update={"numeric": ["distance"], "categorical": ["carrier"]}
    )
    return base.model_copy(
        update={"target": target, "primary_metric": metric, "features": features}
    )


def minutes() -> PerennialConfig:
    return with_target(
        TargetConfig(name="delay-minutes", column="arr_delay", task="regression"), "rmse"
    )


def bands(by_name: bool = False) -> PerennialConfig:
    if by_name:
        target = TargetConfig(name="band", column="band", task="multiclass", classes=BANDS)
    else:
        target = TargetConfig(
            name="band", column="arr_delay", task="multiclass", classes=BANDS, bins=[15, 60]
        )
    return with_target(target, "macro_auc")


def batch(seed: int, rows: int = 3000, late: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    delay = rng.gumbel(-5 + late, 25, rows)
    frame = pd.DataFrame(
        {
            "distance": rng.integers(100, 2500, rows).astype(float),
            "carrier": rng.choice(["AA", "B6", "UA"], rows),
            "arr_delay": delay,
        }
    )
    frame["band"] = np.array(BANDS, dtype=object)[np.digitize(delay, [15, 60], right=True)]
    frame.loc[rng.random(rows) < 0.02, ["arr_delay", "band"]] = None  # cancelled: no label
    return frame


def outcomes(frame: pd.DataFrame, config: PerennialConfig) -> dict[str, tuple[str, bool, str]]:
    reference = [batch(seed) for seed in range(3)]
    meta = {PROFILE_KEY: draft_profile(reference, config), "reference_batches": ["a", "c"]}
    return {
        o.expectation: (o.severity, o.success, o.message or "")
        for o in check_reference(frame, meta, config, "2013-05")
        if o.expectation.startswith(("reference_label", "reference_class", "reference_unknown"))
    }


def failed(found: dict[str, tuple[str, bool, str]]) -> set[str]:
    return {rule for rule, (severity, success, _) in found.items() if not success}


def test_a_regression_label_like_the_reference_passes_every_check() -> None:
    found = outcomes(batch(7), minutes())
    assert set(found) == {LABEL_OUTLIERS, LABEL_MEDIAN, LABEL_SPREAD}
    assert failed(found) == set()


def test_a_regression_label_in_other_units_fails_its_spread() -> None:
    hours = batch(7)
    hours["arr_delay"] = hours["arr_delay"] / 60  # every value plausible, the spread is not
    found = outcomes(hours, minutes())
    assert LABEL_SPREAD in failed(found) and found[LABEL_SPREAD][0] == "critical"
    assert "label spread" in found[LABEL_SPREAD][2] and "arr_delay" in found[LABEL_SPREAD][2]


def test_a_few_labels_off_by_orders_of_magnitude_fail_the_outlier_share() -> None:
    wild = batch(7)
    rows = wild.index[:15]  # 0.5 %: the 1st-99th percentile span does not see them
    wild.loc[rows, "arr_delay"] = wild.loc[rows, "arr_delay"].abs() * 1000 + 10_000
    found = outcomes(wild, minutes())
    assert failed(found) == {LABEL_OUTLIERS}


@pytest.mark.parametrize("by_name", [False, True])
def test_class_shares_are_checked_against_the_reference(by_name: bool) -> None:
    config = bands(by_name)
    assert failed(outcomes(batch(7), config)) == set()
    found = outcomes(batch(8, late=60), config)  # most flights very late
    assert CLASS_SHARE in failed(found)
    assert "share of class" in found[CLASS_SHARE][2]


def test_a_class_the_reference_never_saw_is_a_refusal_naming_column_count_and_share() -> None:
    config = bands(by_name=True)
    odd = batch(7)
    odd.loc[odd.index[:90], "band"] = "diverted"
    found = outcomes(odd, config)
    assert failed(found) == {UNKNOWN_CLASS}
    severity, _, message = found[UNKNOWN_CLASS]
    assert severity == "critical"
    assert message.startswith("band: 90 labelled rows (3.") and "'diverted'" in message
    assert "target.classes" in message
