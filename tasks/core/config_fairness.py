"""Fairness across groups of people (`fairness:`): the sensitive columns that split the holdout
into groups, the group metrics compared, and how much a challenger may widen the largest gap
between groups against the champion before the promotion guard keeps it out
(tasks/registry/fairness.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks.core.config_section import Section

# The group metrics of a binary classifier, on its decisions (score >= threshold).
FairnessMetric = Literal["selection_rate", "tpr", "fpr", "fnr"]


def default_metrics() -> list[FairnessMetric]:
    return ["selection_rate", "tpr", "fpr"]


class FairnessConfig(Section):
    """Evaluation only: a sensitive column is kept in the validated data for this, and may never
    be a feature. An empty `sensitive` list turns the whole section off."""

    sensitive: list[str] = Field(
        default_factory=list,
        description="Columns whose values form the groups (e.g. gender, age_band); each is "
        "judged on its own. Never features.",
    )
    metrics: list[FairnessMetric] = Field(
        default_factory=default_metrics,
        min_length=1,
        description="Group metrics: selection_rate (share selected), tpr, fpr, fnr.",
    )
    tolerance: float = Field(
        0.02,
        ge=0,
        description="How much a challenger may widen a metric's largest gap between groups "
        "against the champion (on the same holdout) before it is kept out.",
    )
    min_group_size: int = Field(
        100,
        ge=1,
        description="Smaller groups are reported but not judged (their rates are noise).",
    )
    threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="Score at or above which a row counts as selected (a positive decision).",
    )

    @field_validator("sensitive", "metrics")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        repeated = sorted({item for item in value if value.count(item) > 1})
        if repeated:
            raise ValueError(f"{repeated} listed twice")
        return value
