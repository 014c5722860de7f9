"""The drift monitor's thresholds (`drift:`): PSI of each feature and of the champion's scores,
the champion's AUC against its holdout, label shift."""

from __future__ import annotations

from pydantic import Field, model_validator

from tasks.core.config_section import Section


class DriftConfig(Section):
    """Drift monitor thresholds: PSI of each feature and of the champion's scores."""

    psi_warn: float = Field(0.1, ge=0, description="PSI from which a feature is reported.")
    psi_alert: float = Field(
        0.25, ge=0, description="PSI from which drift is alerted (event: retrain)."
    )
    bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric feature.")
    max_categories: int = Field(
        50, ge=1, description="Most frequent categories kept; the rest share one bin."
    )
    min_rows: int = Field(500, ge=1, description="Smaller batches are not judged.")
    auc_drop_alert: float = Field(
        0.05,
        gt=0,
        description="Champion AUC on a labelled batch this far below its holdout AUC alerts.",
    )
    weighted_psi_alert: float = Field(
        0.1,
        ge=0,
        description="Without labels, PSI weighted by the champion's use of each feature (mean "
        "|SHAP| shares) alerts from here, or from drift_factor x the reference's own drift.",
    )
    drift_factor: float = Field(
        2.0,
        gt=0,
        description="The weighted PSI alerts above this many times the largest of the "
        "reference's own recent batches (validation, holdout) against its fit rows.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Features not monitored (e.g. known seasonal ones)."
    )
    include_time_features: bool = Field(
        False,
        description="Monitor the features derived from the time column too (features.time). "
        "Off by default: one month against a year-long reference always drifts in `month`.",
    )
    label_shift_alert: float = Field(
        0.1,
        gt=0,
        le=1,
        description="A labelled batch whose positive rate is this far (absolute) from the "
        "reference's positive rate alerts (label drift).",
    )

    @model_validator(mode="after")
    def _warn_below_alert(self) -> DriftConfig:
        if self.psi_warn > self.psi_alert:
            raise ValueError("psi_warn must not exceed psi_alert")
        return self
