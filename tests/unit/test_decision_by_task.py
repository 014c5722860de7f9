"""The promotion decision speaks each task's metrics: for regression, RMSE with its interval, the
naive baseline (the training label's mean) as the floor, mean bias as guard and sanity; for
multiclass, the macro AUC and its floor. Models are fixed answers, the decision and its
bootstrap are real. And a binary config keeps its fingerprint (its studies and training keys)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tasks.registry.evaluate import Comparison, compare
from tests.conftest import FLIGHTS, ROOT

MINUTES = ROOT / "configs" / "flights_delay_minutes.yaml"
BAND = ROOT / "configs" / "flights_delay_band.yaml"
ROWS = 3000


class Fixed:
    """A model that answers given numbers: values (`predict`) or probabilities."""

    def __init__(self, answer: np.ndarray) -> None:
        self.answer = answer

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return self.answer

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return self.answer


def holdout(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"carrier": rng.choice(["AA", "UA", "DL"], ROWS), "origin": "JFK"})
    return x, pd.Series(rng.normal(10, 40, ROWS), name="y")


def judge_regression(
    champion_noise: float | None, challenger_noise: float, **over: Any
) -> Comparison:
    config = load_config(MINUTES)
    x, y = holdout()
    rng = np.random.default_rng(1)

    def model(noise: float) -> Fixed:
        return Fixed(y.to_numpy() + rng.normal(0, noise, ROWS))

    champion = model(champion_noise) if champion_noise is not None else None
    return compare(
        over.pop("challenger", model(challenger_noise)),
        champion,
        x,
        y,
        config.primary_metric,
        config.guard_metrics,
        config.promotion,
        seed=3,
        task="regression",
        baseline=over.pop("baseline", 10.0),
        unit="min",
    )


def test_a_regression_challenger_significantly_worse_in_rmse_is_kept_out() -> None:
    comparison = judge_regression(champion_noise=20, challenger_noise=25)
    decision = comparison.decision
    assert not decision.promote
    assert decision.deltas["rmse"] > 3  # RMSE went up: worse
    assert decision.interval is not None and decision.interval[1] < 0  # gain: significantly < 0
    primary = next(r for r in decision.blockers if r.startswith("RMSE +"))
    assert primary.endswith("< required +0.05") and "min" in primary
    (interval,) = [r for r in decision.reasons if "95% interval of the gain" in r]
    assert interval.startswith("RMSE: ") and interval.endswith(" min]")
    assert "AUC" not in " ".join(decision.reasons)


def test_a_better_regression_challenger_is_promoted_and_says_both_numbers() -> None:
    comparison = judge_regression(champion_noise=25, challenger_noise=20)
    decision = comparison.decision
    assert decision.promote, decision.reasons
    assert decision.interval is not None and decision.interval[0] > 0
    assert any(r.startswith("RMSE -") and ">= required" in r for r in decision.reasons)
    (baseline,) = [r for r in decision.reasons if "for the training mean" in r]
    challenger_rmse = comparison.challenger.rmse
    assert f"RMSE {challenger_rmse:.2f} min against " in baseline
    assert comparison.challenger.get("baseline_rmse") == pytest.approx(40, rel=0.05)


def test_a_model_that_does_not_beat_the_naive_baseline_is_refused_as_a_first_model() -> None:
    _, y = holdout()
    # Hardly better than predicting the training mean (10): RMSE about 1 % below it.
    weak = Fixed(10 + 0.01 * (y.to_numpy() - 10))
    decision = judge_regression(None, 0, challenger=weak).decision
    assert not decision.promote
    (line,) = decision.blockers
    assert "for the training mean" in line and "does not beat the naive baseline" in line
    useful = judge_regression(None, challenger_noise=20).decision
    assert useful.promote and useful.reasons[0].startswith(
        "first model: passes sanity checks, RMSE"
    )


def test_a_biased_regression_model_fails_the_sanity_check() -> None:
    _, y = holdout()
    biased = Fixed(y.to_numpy() + 15)  # 15 min late on average: beyond 0.25 of the spread (40)
    decision = judge_regression(None, 0, challenger=biased).decision
    assert not decision.promote
    assert any("mean bias +15.00 min" in b for b in decision.blockers)


def test_multiclass_is_judged_by_macro_auc_with_its_floor() -> None:
    config = load_config(BAND)
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"carrier": rng.choice(["AA", "UA"], ROWS), "origin": "JFK"})
    y = pd.Series(rng.integers(0, 3, ROWS))
    informative = np.full((ROWS, 3), 0.2)
    informative[np.arange(ROWS), y] = 0.6
    noise = rng.dirichlet([1, 1, 1], ROWS)

    def judge(answer: np.ndarray) -> Comparison:
        return compare(
            Fixed(answer), None, x, y, config.primary_metric, config.guard_metrics,
            config.promotion, seed=3, task="multiclass",
        )  # fmt: skip

    good = judge(0.5 * informative + 0.5 * noise)
    assert good.decision.promote
    assert good.decision.reasons[0].startswith("first model: passes sanity checks, macro AUC")
    assert good.challenger.worst_slice.startswith("carrier=")
    refused = judge(noise).decision
    assert not refused.promote
    assert refused.blockers == [
        f"sanity: macro_auc {judge(noise).challenger.macro_auc:.4f} below the floor 0.6"
    ]


def test_guards_default_by_task_and_a_guard_of_another_task_is_refused() -> None:
    assert load_config(MINUTES).guard_metrics == ["mean_bias", "worst_slice"]
    assert load_config(FLIGHTS).guard_metrics == ["log_loss", "worst_slice_auc"]
    text = MINUTES.read_text().replace(
        "guard_metrics: [mean_bias, worst_slice]", "guard_metrics: [log_loss]"
    )
    wrong = MINUTES.parent / "wrong_guard_for_test.yaml"
    try:
        wrong.write_text(text.replace("dataset: flights_delay_minutes", "dataset: wrong_guard"))
        with pytest.raises(ConfigError, match="do not guard a regression target"):
            load_config(wrong)
    finally:
        wrong.unlink()


def test_a_binary_config_keeps_its_fingerprint_whatever_the_fields_of_other_tasks() -> None:
    config = load_config(FLIGHTS)
    other = config.model_copy(
        update={"promotion": config.promotion.model_copy(update={"min_skill": 0.3})}
    )
    assert other.fingerprint() == config.fingerprint()
    regression = load_config(MINUTES)
    loose = regression.model_copy(
        update={"promotion": regression.promotion.model_copy(update={"min_skill": 0.3})}
    )
    assert loose.fingerprint() != regression.fingerprint()
