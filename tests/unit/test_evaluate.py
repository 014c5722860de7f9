import numpy as np
import pandas as pd
import pytest

from tasks.core.config_promotion import PromotionConfig
from tasks.registry.evaluate import Metrics, decide, metrics_from
from tasks.registry.metrics import predict

POLICY = PromotionConfig(
    min_improvement=0.01,
    primary_floor=0.6,
    positive_rate_bounds=(0.05, 0.8),
    guard_tolerance={"log_loss": 0.01},
)


def metrics(auc: float, loss: float = 0.45, mean: float = 0.2, finite: bool = True) -> Metrics:
    return Metrics.binary(
        roc_auc=auc, log_loss=loss, mean_prediction=mean, label_rate=0.2, rows=100, finite=finite
    )


def run(challenger: Metrics, champion: Metrics | None):  # type: ignore[no-untyped-def]
    return decide(challenger, champion, "roc_auc", ["log_loss"], POLICY)


def test_first_model_needs_only_sanity() -> None:
    decision = run(metrics(0.65), None)
    assert decision.promote
    assert "first model" in decision.reasons[0]


def test_better_challenger_is_promoted_with_numbers_in_the_reasons() -> None:
    decision = run(metrics(0.72), metrics(0.70))
    assert decision.promote
    assert decision.deltas["roc_auc"] == pytest.approx(0.02)
    assert any("+0.0200" in r for r in decision.reasons)


def test_too_small_a_gain_keeps_the_champion() -> None:
    decision = run(metrics(0.705), metrics(0.70))
    assert not decision.promote
    assert "roc_auc +0.0050 < required +0.01" in decision.reasons[0]
    assert decision.blockers == [decision.reasons[0]]


def test_guard_regression_blocks_even_a_better_auc() -> None:
    decision = run(metrics(0.75, loss=0.50), metrics(0.70, loss=0.45))
    assert not decision.promote
    assert any("guard log_loss worse by 0.0500" in r for r in decision.reasons)
    # Only the failed check is a blocker: the AUC gain itself passed.
    assert decision.blockers == ["guard log_loss worse by 0.0500 > tolerance 0.01"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (metrics(0.55), "below the floor"),
        (metrics(0.9, mean=0.95), "mean prediction"),
        (metrics(0.9, finite=False), "not all finite"),
    ],
)
def test_insane_challengers_are_refused(bad: Metrics, reason: str) -> None:
    decision = run(bad, metrics(0.7))
    assert not decision.promote
    assert reason in " ".join(decision.reasons)


def test_metrics_from_the_predicted_probabilities() -> None:
    class Fixed:
        def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
            p = x["p"].to_numpy()
            return np.column_stack([1 - p, p])

    x = pd.DataFrame({"p": [0.1, 0.2, 0.8, 0.9]})
    result = metrics_from(x, pd.Series([0, 0, 1, 1]), predict(Fixed(), x))
    assert result.roc_auc == 1.0
    assert result.mean_prediction == pytest.approx(0.5)
    assert result.finite and result.rows == 4


def test_worst_slice_ignores_small_slices() -> None:
    from tasks.registry.evaluate import metrics_from

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1000)
    good = np.where(y == 1, 0.8, 0.2)
    carriers = np.array(["UA"] * 600 + ["AA"] * 380 + ["XX"] * 20)
    p = good.copy()
    p[600:980] = rng.uniform(0, 1, 380)  # AA: the model knows nothing there
    p[980:] = 1 - good[980:]  # XX: perfectly wrong, but too small to count
    x = pd.DataFrame({"carrier": carriers})
    result = metrics_from(x, pd.Series(y), p, ["carrier"], min_slice_rows=100)
    assert result.worst_slice == "carrier=AA"
    assert 0.4 < result.worst_slice_auc < 0.6


def test_paired_bootstrap_interval_brackets_the_gain() -> None:
    from tasks.registry.metrics import paired_bootstrap

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    noise = rng.normal(0, 1, 2000)
    strong = y + 0.8 * noise
    weak = y + 1.5 * noise
    low, high = paired_bootstrap(y, strong, weak, samples=200, confidence=0.95, seed=3)
    assert 0 < low < high
    same_low, same_high = paired_bootstrap(y, strong, strong, samples=50, confidence=0.95, seed=3)
    assert same_low == same_high == 0.0


def test_require_significant_blocks_a_gain_whose_interval_includes_zero() -> None:
    strict = POLICY.model_copy(update={"require_significant": True})
    decision = decide(metrics(0.72), metrics(0.70), "roc_auc", ["log_loss"], strict, (-0.01, 0.05))
    assert not decision.promote
    assert "includes zero" in decision.reasons[1]
    assert decide(metrics(0.72), metrics(0.70), "roc_auc", [], strict, (0.005, 0.04)).promote


def test_a_guard_that_keeps_out_a_significant_gain_says_so_in_one_line_first() -> None:
    challenger, champion = metrics(0.75, loss=0.50), metrics(0.70, loss=0.45)
    significant = decide(challenger, champion, "roc_auc", ["log_loss"], POLICY, (0.03, 0.07))
    assert not significant.promote
    assert significant.reasons[0] == (
        "kept out by a guard although its roc_auc gain +0.0500 is significant "
        "([+0.0300, +0.0700]): guard log_loss worse by 0.0500 > tolerance 0.01"
    )
    unsure = decide(challenger, champion, "roc_auc", ["log_loss"], POLICY, (-0.01, 0.07))
    assert not unsure.reasons[0].startswith("kept out")


def refit_decision(gain: float, interval: tuple[float, float] | None, saw: bool = False):  # type: ignore[no-untyped-def]
    return decide(
        metrics(0.70 + gain),
        metrics(0.70),
        "roc_auc",
        ["log_loss"],
        POLICY,
        interval,
        refit=True,
        champion_saw_holdout=saw,
    )


def test_refit_promotes_a_recipe_that_is_not_worse_than_the_champions() -> None:
    """With `split.refit_on_holdout` champion and challenger saw the same batches: the refit's
    gain is the holdout month, so an equal recipe is promoted where the old rule kept it out."""
    assert not run(metrics(0.699), metrics(0.70)).promote
    even = refit_decision(-0.001, (-0.004, 0.002))
    assert even.promote, even.reasons
    assert "its refit adds the holdout" in even.reasons[0]
    # Worse by more than min_improvement (0.01) but within the noise: still promoted.
    assert refit_decision(-0.02, (-0.05, 0.001)).promote


def test_refit_keeps_out_a_recipe_worse_beyond_the_noise() -> None:
    worse = refit_decision(-0.02, (-0.03, -0.012))
    assert not worse.promote
    assert worse.blockers == [
        "roc_auc -0.0200 against a champion that saw the same batches: "
        "worse by more than 0.01 beyond the noise"
    ]
    assert not refit_decision(-0.02, None).promote  # no interval: the margin alone decides


def test_a_champion_trained_on_the_holdout_keeps_the_challenger_out() -> None:
    for refit in (True, False):
        decision = decide(metrics(0.80), metrics(0.70), "roc_auc", [], POLICY, None, refit, True)
        assert not decision.promote
        assert "trained on this holdout" in decision.blockers[0]
