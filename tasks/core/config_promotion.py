"""When a challenger replaces the champion (`promotion:`), and the guard metrics it must not
worsen (`guard_metrics:`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.core.config_section import Section

GuardMetric = Literal["log_loss", "worst_slice_auc"]


def _default_guard_tolerance() -> dict[GuardMetric, float]:
    return {"log_loss": 0.01, "worst_slice_auc": 0.02}


def default_guards() -> list[GuardMetric]:
    """The guard metrics of a config that names none (`guard_metrics:`)."""
    return ["log_loss", "worst_slice_auc"]


class PromotionConfig(Section):
    min_improvement: float = Field(
        0.002, ge=0, description="Primary metric gain needed to promote."
    )
    primary_floor: float = Field(0.6, description="Absolute floor of the primary metric.")
    positive_rate_bounds: tuple[float, float] = Field(
        (0.01, 0.9), description="Sane range of the mean predicted probability."
    )
    guard_tolerance: dict[GuardMetric, float] = Field(
        default_factory=_default_guard_tolerance,
        description="How much each guard metric may worsen.",
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
