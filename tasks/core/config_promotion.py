"""When a challenger replaces the champion (`promotion:`), and the guard metrics it must not
worsen (`guard_metrics:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.core.config_section import Section

# log_loss: a classifier's (binary or multiclass) log loss; worst_slice: the worst slice in the
# task's primary metric (worst_slice_auc: its binary name, kept for existing configs and tags);
# mean_bias: a regression's |mean prediction - mean label|.
GuardMetric = Literal["log_loss", "worst_slice_auc", "worst_slice", "mean_bias"]

# The guards each task may use; the first list of each is its default (`guard_metrics:` unset).
TASK_GUARDS: dict[str, tuple[GuardMetric, ...]] = {
    "binary": ("log_loss", "worst_slice_auc", "worst_slice"),
    "multiclass": ("log_loss", "worst_slice"),
    "regression": ("mean_bias", "worst_slice"),
}
TASK_DEFAULT_GUARDS: dict[str, list[GuardMetric]] = {
    "binary": ["log_loss", "worst_slice_auc"],
    "multiclass": ["log_loss", "worst_slice"],
    "regression": ["mean_bias", "worst_slice"],
}
# Tolerance of a guard that `guard_tolerance` does not name. For a regression target a guard's
# worsening is a share of the champion's primary metric (0.02: 2 % of its RMSE).
GUARD_TOLERANCE_FALLBACK: dict[str, float] = {
    "log_loss": 0.01,
    "worst_slice_auc": 0.02,
    "worst_slice": 0.02,
    "mean_bias": 0.02,
}


def _default_guard_tolerance() -> dict[GuardMetric, float]:
    return {"log_loss": 0.01, "worst_slice_auc": 0.02}


def default_guards() -> list[GuardMetric]:
    """The guard metrics of a binary config that names none (`guard_metrics:`)."""
    return list(TASK_DEFAULT_GUARDS["binary"])


class PromotionConfig(Section):
    min_improvement: float = Field(
        0.002, ge=0, description="Primary metric gain needed to promote."
    )
    primary_floor: float = Field(
        0.6, description="Absolute floor of the primary metric (an AUC: binary, multiclass)."
    )
    positive_rate_bounds: tuple[float, float] = Field(
        (0.01, 0.9), description="binary: sane range of the mean predicted probability."
    )
    guard_tolerance: dict[GuardMetric, float] = Field(
        default_factory=_default_guard_tolerance,
        description="How much each guard metric may worsen (regression: as a share of the "
        "champion's primary metric, 0.02 = 2 %).",
    )
    min_skill: float = Field(
        0.02,
        ge=0,
        lt=1,
        description="regression: the floor. The model must beat the naive baseline (the "
        "training label's mean) on the holdout by this share of the baseline's primary metric "
        "(0.02: RMSE at least 2 % below the baseline's).",
    )
    max_bias_share: float = Field(
        0.5,
        gt=0,
        description="regression: sane |mean prediction - mean label| on the holdout, as a share "
        "of the label's standard deviation (what positive_rate_bounds is to a classifier).",
    )
    slices: list[str] = Field(
        default_factory=list,
        description="Categorical features whose values form slices for the worst-slice guard.",
    )
    min_slice_rows: int = Field(200, ge=1, description="Smaller slices are ignored.")
    bootstrap_samples: int = Field(
        200, ge=0, description="Paired bootstrap resamples for the improvement's interval."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    require_significant: bool = Field(
        False, description="Promote only if the interval's lower bound is above zero."
    )
