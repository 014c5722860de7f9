"""Guards and sanity checks of the promotion policy, by task.

Sanity (every challenger, the first model too): finite predictions; a sane mean prediction
(binary: inside `positive_rate_bounds`; regression: |mean bias| within `max_bias_share` of the
label's spread); the floor (an AUC primary metric: `primary_floor`; regression: beat the naive
baseline, the training label's mean, by `min_skill`).

Guards (a challenger against the champion): each is one entry of `GUARDS`, which reads its
number off a holdout record and says which way is better. A regression guard's worsening is a
share of the champion's primary metric, so one tolerance fits any unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasks.core.config_promotion import GUARD_TOLERANCE_FALLBACK, PromotionConfig
from tasks.core.metrics import metric
from tasks.registry.holdout import Metrics, worst_slice_name


@dataclass(frozen=True)
class Reading:
    value: float
    higher_is_better: bool


def _log_loss(metrics: Metrics, primary: str) -> Reading:
    name = "multiclass_log_loss" if metrics.task == "multiclass" else "log_loss"
    return Reading(metrics.get(name), False)


def _worst_slice(metrics: Metrics, primary: str) -> Reading:
    return Reading(metrics.get(worst_slice_name(primary)), metric(primary).higher_is_better)


def _mean_bias(metrics: Metrics, primary: str) -> Reading:
    return Reading(abs(metrics.get("mean_bias")), False)


GUARDS: dict[str, Callable[[Metrics, str], Reading]] = {
    "log_loss": _log_loss,
    "worst_slice_auc": _worst_slice,
    "worst_slice": _worst_slice,
    "mean_bias": _mean_bias,
}


@dataclass(frozen=True)
class GuardOutcome:
    guard: str
    change: float  # challenger minus champion, in the guard's own number
    blocks: bool
    reason: str


def check_guard(
    guard: str, challenger: Metrics, champion: Metrics, primary: str, policy: PromotionConfig
) -> GuardOutcome:
    """Whether `guard` worsens beyond its tolerance, and the line that says so."""
    tolerances: dict[str, float] = {str(k): v for k, v in policy.guard_tolerance.items()}
    tolerance = tolerances.get(guard, GUARD_TOLERANCE_FALLBACK.get(guard, 0.0))
    new, old = GUARDS[guard](challenger, primary), GUARDS[guard](champion, primary)
    change = new.value - old.value
    if np.isnan(change):
        return GuardOutcome(
            guard, change, False, f"guard {guard}: no slice large enough to compare"
        )
    worsening = -change if new.higher_is_better else change
    if challenger.task != "regression":
        if worsening > tolerance:
            return GuardOutcome(
                guard,
                change,
                True,
                f"guard {guard} worse by {worsening:.4f} > tolerance {tolerance}",
            )
        return GuardOutcome(
            guard, change, False, f"guard {guard} {change:+.4f} within tolerance {tolerance}"
        )
    judge = metric(primary)
    scale = abs(champion.get(primary)) or 1.0
    share = worsening / scale
    what = f"guard {guard} ({judge.show(change, challenger.unit, signed=True)})"
    if share > tolerance:
        return GuardOutcome(
            guard,
            change,
            True,
            f"{what} worse by {share:.1%} of the champion's {judge.title} > tolerance "
            f"{tolerance:.1%}",
        )
    return GuardOutcome(guard, change, False, f"{what} within tolerance {tolerance:.1%}")


def baseline_line(metrics: Metrics, primary: str) -> str | None:
    """Regression: the model's primary metric beside the naive baseline's, e.g. `RMSE 44.10 min
    against 46.90 min for the training mean (skill 6.0 %)`; None without a baseline."""
    naive = metrics.get(f"baseline_{primary}")
    if np.isnan(naive):
        return None
    judge = metric(primary)
    return (
        f"{judge.title} {judge.show(metrics.get(primary), metrics.unit)} against "
        f"{judge.show(naive, metrics.unit)} for the training mean (skill "
        f"{metrics.get('skill'):.1%})"
    )


def sanity_failures(metrics: Metrics, primary: str, policy: PromotionConfig) -> list[str]:
    failures = []
    if not metrics.finite:
        failures.append("predictions are not all finite")
    if metrics.task == "binary":
        low, high = policy.positive_rate_bounds
        if not low <= metrics.mean_prediction <= high:
            failures.append(
                f"mean prediction {metrics.mean_prediction:.3f} outside [{low}, {high}]"
            )
    judge = metric(primary)
    if metrics.task == "regression":
        failures += _regression_sanity(metrics, primary, policy)
    elif judge.higher_is_better:
        value = metrics.get(primary)
        if not value >= policy.primary_floor:
            failures.append(f"{primary} {value:.4f} below the floor {policy.primary_floor}")
    return failures


def _regression_sanity(metrics: Metrics, primary: str, policy: PromotionConfig) -> list[str]:
    failures = []
    bias, spread = metrics.get("mean_bias"), metrics.get("label_std")
    bound = policy.max_bias_share * spread
    if not abs(bias) <= bound:
        failures.append(
            f"mean bias {bias:+.2f} {metrics.unit}".rstrip()
            + f" beyond {policy.max_bias_share} of the label's spread ({bound:.2f})"
        )
    line = baseline_line(metrics, primary)
    skill = metrics.get("skill")
    if line is not None and not skill >= policy.min_skill:
        failures.append(
            f"{line} does not beat the naive baseline by min_skill {policy.min_skill:.1%}"
        )
    return failures
