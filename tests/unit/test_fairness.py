"""Group metrics, gaps and the fairness guard on hand-made cases whose answers are worked out by
hand below; and the config rules of `fairness:`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.core.config_fairness import FairnessConfig
from tasks.core.config_section import ConfigError
from tasks.data.features import sensitive_groups
from tasks.registry.evaluate import Decision
from tasks.registry.fairness import (
    FairnessComparison,
    GroupReport,
    card_lines,
    group_report,
    metric_name,
    version_metrics,
)
from tests.conftest import FLIGHTS

ROOT = Path(__file__).resolve().parents[2]

# Column `sex`, decisions at 0.5:
#   a: labels 1 1 0 0, scores .9 .2 .6 .1 -> decisions 1 0 1 0: selection .5, TPR .5, FPR .5
#   b: labels 1 1 0 0, scores .8 .7 .4 .3 -> decisions 1 1 0 0: selection .5, TPR 1,  FPR 0
#   c: labels 1 0,     scores .9 .9       -> decisions 1 1:     selection 1,  TPR 1,  FPR 1
#      (2 rows: below min_group_size 3, reported, not judged)
#   gaps over a and b: selection 0, TPR .5, FPR .5 (with c judged: .5, .5, 1).
# Column `band`: x = the first five rows (a and b's first), y = the other five.
#   x: labels 1 1 0 0 1, decisions 1 0 1 0 1: selection .6, TPR 2/3, FPR .5
#   y: labels 1 0 0 1 0, decisions 1 0 0 1 1: selection .6, TPR 1,   FPR 1/3
LABELS = np.array([1, 1, 0, 0, 1, 1, 0, 0, 1, 0])
SCORES = np.array([0.9, 0.2, 0.6, 0.1, 0.8, 0.7, 0.4, 0.3, 0.9, 0.9])
GROUPS = pd.DataFrame(
    {
        "sex": ["a"] * 4 + ["b"] * 4 + ["c"] * 2,
        "band": ["x"] * 5 + ["y"] * 5,
    }
)


def config(**changes: object) -> FairnessConfig:
    settings: dict[str, object] = {"sensitive": ["sex", "band"], "min_group_size": 3}
    return FairnessConfig.model_validate(settings | changes)


def test_group_metrics_and_gaps_by_hand() -> None:
    report = group_report(LABELS, SCORES, GROUPS, config())
    rows = {(r["column"], r["group"]): r for r in report.groups}
    a, b, c = rows["sex", "a"], rows["sex", "b"], rows["sex", "c"]
    assert (a["selection_rate"], a["tpr"], a["fpr"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (b["selection_rate"], b["tpr"], b["fpr"]) == pytest.approx((0.5, 1.0, 0.0))
    assert (c["rows"], c["judged"], c["selection_rate"]) == (2, False, pytest.approx(1.0))
    assert a["judged"] and b["judged"] and a["rows"] == 4
    x, y = rows["band", "x"], rows["band", "y"]
    assert (x["selection_rate"], x["tpr"], x["fpr"]) == pytest.approx((0.6, 2 / 3, 0.5))
    assert (y["selection_rate"], y["tpr"], y["fpr"]) == pytest.approx((0.6, 1.0, 1 / 3))
    # The small group c takes no part in the gaps.
    assert report.gaps["selection_rate"]["sex"] == pytest.approx(0.0)
    assert report.gaps["tpr"]["sex"] == pytest.approx(0.5)
    assert report.gaps["fpr"]["sex"] == pytest.approx(0.5)
    assert report.gaps["tpr"]["band"] == pytest.approx(1 / 3)
    assert report.gaps["fpr"]["band"] == pytest.approx(1 / 6)
    assert report.largest("tpr") == ("sex", pytest.approx(0.5))
    judged_all = group_report(LABELS, SCORES, GROUPS, config(min_group_size=1))
    assert judged_all.gaps["selection_rate"]["sex"] == pytest.approx(0.5)
    assert judged_all.gaps["fpr"]["sex"] == pytest.approx(1.0)


def test_counted_cells_give_the_rates_of_the_rows() -> None:
    # group_report hands MetricFrame one weighted row per (group, label, decision) cell: the
    # same rates as MetricFrame over every row.
    from fairlearn.metrics import MetricFrame, false_negative_rate, selection_rate

    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 3000), rng.random(3000)
    groups = pd.DataFrame({"g": rng.choice(["a", "b", "c"], 3000, p=[0.6, 0.3, 0.1])})
    settings = config(sensitive=["g"], metrics=["selection_rate", "fnr"], min_group_size=1)
    report = group_report(labels, scores, groups, settings)
    direct = MetricFrame(
        metrics={"selection_rate": selection_rate, "fnr": false_negative_rate},
        y_true=labels,
        y_pred=(scores >= 0.5).astype(int),
        sensitive_features=groups["g"],
    ).by_group
    for row in report.groups:
        assert row["rows"] == (groups["g"] == row["group"]).sum()
        for metric in ("selection_rate", "fnr"):
            assert row[metric] == pytest.approx(direct.loc[row["group"], metric])


def test_a_rate_without_its_rows_is_undefined_not_zero() -> None:
    # Group n holds negatives only: its TPR is undefined (no positive to find), not 0, and
    # leaves the TPR gap to the groups that have one; one judged group makes no gap.
    labels = np.array([1, 0, 1, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.2, 0.7, 0.1, 0.6])
    groups = pd.DataFrame({"g": ["p", "p", "p", "n", "n", "n"]})
    report = group_report(labels, scores, groups, config(sensitive=["g"], metrics=["tpr", "fpr"]))
    rows = {r["group"]: r for r in report.groups}
    assert math.isnan(rows["n"]["tpr"]) and rows["p"]["tpr"] == pytest.approx(0.5)
    assert math.isnan(report.gaps["tpr"]["g"])  # one group with a TPR: no gap
    assert report.gaps["fpr"]["g"] == pytest.approx(2 / 3)  # p: 0 of 1, n: 2 of 3


def reports(champion_gap: float, challenger_gap: float) -> FairnessComparison:
    def report(gap: float) -> GroupReport:
        return GroupReport(
            [], {"tpr": {"sex": gap}, "fpr": {"sex": 0.1, "race": math.nan}}, 0.5, 100
        )

    return FairnessComparison(report(challenger_gap), report(champion_gap), tolerance=0.02)


def test_the_guard_keeps_out_a_challenger_that_widens_a_gap_beyond_the_tolerance() -> None:
    decision = Decision(True, ["roc_auc +0.0100 >= required +0.002"])
    reports(0.05, 0.12).judge(decision)
    assert not decision.promote
    assert decision.blockers == [
        "guard fairness: tpr gap between sex groups widened 0.0500 -> 0.1200 (+0.0700) > "
        "tolerance 0.02"
    ]
    assert decision.blockers[0] in decision.reasons
    assert decision.deltas["fairness_gap tpr by sex"] == pytest.approx(0.07)
    assert "fairness_gap fpr by race" not in decision.deltas  # unknown on both: no change


def test_the_guard_lets_through_a_gap_within_the_tolerance_or_narrower() -> None:
    for before, after in ((0.05, 0.07), (0.12, 0.05)):
        decision = Decision(True, [])
        reports(before, after).judge(decision)
        assert decision.promote and not decision.blockers
        assert decision.reasons[-1].startswith("guard fairness: largest widening")


def test_without_a_champion_the_gaps_are_told_not_judged() -> None:
    comparison = reports(0.0, 0.3)
    comparison.champion = None
    decision = Decision(True, [])
    comparison.judge(decision)
    assert decision.promote and not decision.blockers
    assert decision.reasons == [
        "fairness (no champion to compare): tpr gap 0.3000 (sex); fpr gap 0.1000 (sex)"
    ]


def test_the_gaps_reach_the_version_and_the_card() -> None:
    comparison = FairnessComparison(group_report(LABELS, SCORES, GROUPS, config()), None, 0.02)
    metrics = version_metrics(comparison)
    assert metrics[metric_name("tpr", "sex")] == pytest.approx(0.5)
    assert metric_name("tpr", "age band/2") == "holdout_fairness_gap_tpr_age_band_2"
    card = "\n".join(card_lines(comparison, "no champion"))
    assert "| sex | c | 2 | no | 1.0000 | 1.0000 | 1.0000 |" in card
    assert "| tpr by sex | 0.5000 | - | - |" in card
    assert card_lines(None, "v1") == []


def test_sensitive_groups_are_text_labels_and_a_missing_value_is_a_group() -> None:
    frame = pd.DataFrame({"female": [1.0, 0.0, None], "x": [1, 2, 3]})
    loaded = load_config(FLIGHTS)
    assert sensitive_groups(frame, loaded) is None  # flights names no sensitive column
    loaded.fairness.sensitive = ["female"]
    groups = sensitive_groups(frame, loaded)
    assert groups is not None and groups["female"].tolist() == ["1", "0", "missing"]
    loaded.fairness.sensitive = ["gender"]
    with pytest.raises(KeyError, match="gender"):
        sensitive_groups(frame, loaded)


def _gss_with(tmp_path: Path, old: str, new: str) -> Path:
    text = (ROOT / "configs" / "gss.yaml").read_text()
    assert old in text
    path = tmp_path / "gss.yaml"
    path.write_text(text.replace(old, new))
    return path


def test_a_sensitive_column_may_not_be_a_feature(tmp_path: Path) -> None:
    path = _gss_with(tmp_path, "categorical: [workstat,", "categorical: [female, workstat,")
    with pytest.raises(ConfigError, match=r"fairness\.sensitive column 'female' is also a feature"):
        load_config(path)
    path = _gss_with(tmp_path, "sensitive: [female, black]", "sensitive: [income]")
    with pytest.raises(ConfigError, match="'income' is the target or time column"):
        load_config(path)
    path = _gss_with(tmp_path, "metrics: [selection_rate, tpr, fpr]", "metrics: [auc]")
    with pytest.raises(ConfigError, match=r"fairness\.metrics"):
        load_config(path)


def test_the_people_dataset_declares_its_groups() -> None:
    gss = load_config(ROOT / "configs" / "gss.yaml")
    assert gss.fairness.sensitive == ["female", "black"]
    assert not set(gss.fairness.sensitive) & set(gss.features.columns)
    assert load_config(FLIGHTS).fairness.sensitive == []  # off unless declared


def test_fairness_needs_a_binary_target_for_now(tmp_path: Path) -> None:
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "gss.yaml").read_text())
    raw["target"] = {"name": "schooling", "column": "educ", "task": "regression"}
    raw["features"]["numeric"].remove("educ")
    for key in ("primary_metric", "guard_metrics"):  # the task's own
        raw.pop(key)
    path = tmp_path / "gss.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="fairness needs a binary target for now"):
        load_config(path)
    del raw["fairness"]
    path.write_text(yaml.safe_dump(raw))
    assert load_config(path).target.task == "regression"
