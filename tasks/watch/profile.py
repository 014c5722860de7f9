"""The drift reference profile and a batch measured against it.

The profile (`reference/<dataset>/<version>.json`) holds, from the model's training rows, the
quantile bin edges and bin frequencies of each numeric feature (missing values get their own
bin), the frequencies of each categorical feature's most common values (the rest share an
"other" bin, missing ones a "missing" bin), the label's record (positive rate, class shares, or
mean and binned values: tasks/watch/task_metrics.py) and the binned distribution of the model's
own predictions. A batch is then binned on the same edges and compared by the Population
Stability Index (tasks/watch/binning.py) per feature and for the predictions (prediction
drift); with labels, the label's record and the champion's metric on the batch (the target
task's: AUC, macro AUC, RMSE, ...) say whether the relation itself moved (concept drift). What
alerts is judged in `tasks/watch/drift.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.core import catalog
from tasks.core.config import PerennialConfig
from tasks.core.config_drift import DriftConfig
from tasks.core.metrics import METRICS
from tasks.core.results import ABSENT_IF_NONE, jsonable
from tasks.core.storage import Storage
from tasks.watch.binning import (  # noqa: F401 (re-exported: the profile's vocabulary)
    EPSILON,
    as_float,
    categorical_shares,
    numeric_shares,
    psi,
    quantile_edges,
)
from tasks.watch.task_metrics import (
    POSITIVE_RATE,
    LabelShift,
    label_profile,
    label_shift,
    prediction_edges,
    prediction_values,
    shown,
)

if TYPE_CHECKING:
    from tasks.watch.estimate import Estimate

OK, WARN, ALERT, TOO_FEW_ROWS = "ok", "warn", "alert", "too_few_rows"
PREDICTION = "(prediction)"  # name of the score distribution among the features


class DriftError(RuntimeError):
    """No reference profile to compare with, or a batch that does not fit the profile."""


# -- the reference profile --------------------------------------------------------------------


def build_profile(
    x: pd.DataFrame,
    y: pd.Series | np.ndarray,
    scores: np.ndarray,
    config: PerennialConfig,
    version: str,
    calibration: dict[str, Any] | None = None,
    importance: dict[str, float] | None = None,
    holdout_interval: tuple[float, float] | None = None,
    recent: list[pd.DataFrame] | None = None,
) -> dict[str, Any]:
    """Reference profile of a model's training rows `x` (model inputs), labels and scores (in
    the task's shape), and what estimates its metric before labels, fitted on its holdout
    (`calibration`, tasks/watch/estimate.py), if any.

    For the judgement (see the module's docstring): `importance`, the model's mean |SHAP| per
    feature; `holdout_interval`, the bootstrap interval of its judged metric (the config's
    primary metric) on its holdout; `recent`, batches
    of model inputs like the ones it will meet (validation, holdout) whose weighted PSI against
    the profile calibrates the alert threshold."""
    drift = config.drift
    numeric = [*config.features.numeric, *config.features.time]
    profile: dict[str, Any] = {
        "dataset": config.dataset,
        "model": config.model_name,
        "version": str(version),
        "rows": len(x),
        "bins": drift.bins,
        "task": config.target.task,
        "metric": config.primary_metric,
        **label_profile(y, config),
        "numeric": {},
        "categorical": {},
    }
    for column in numeric:
        values = as_float(x, column)
        edges = quantile_edges(values, drift.bins)
        shares = numeric_shares(values, edges)
        profile["numeric"][column] = {"edges": edges, "shares": shares.tolist()}
    for column in config.features.categorical:
        counts = x[column].value_counts(dropna=True)
        categories = counts.index[: drift.max_categories].tolist()
        shares = categorical_shares(x[column], categories)
        profile["categorical"][column] = {"categories": categories, "shares": shares.tolist()}
    edges = prediction_edges(scores, drift.bins)
    shares = numeric_shares(prediction_values(scores), edges)
    profile["scores"] = {"edges": edges, "shares": shares.tolist()}
    if calibration:
        profile["calibration"] = calibration
    monitored = [
        c for c in [*profile["numeric"], *profile["categorical"]] if c not in unmonitored(config)
    ]
    if importance:
        used = {name: max(float(importance.get(name, 0.0)), 0.0) for name in monitored}
        total = sum(used.values())
        if total > 0:
            profile["importance"] = {name: value / total for name, value in used.items()}
    if holdout_interval is not None:
        profile["holdout_interval"] = [float(v) for v in holdout_interval]
    if recent and "importance" in profile:
        usual = [
            weighted_psi(profile, feature_psi(profile, batch, unmonitored(config)))
            for batch in recent
        ]
        profile["recent_weighted_psi"] = max(usual)
    return profile


def weighted_psi(profile: dict[str, Any], values: dict[str, float]) -> float:
    """PSI of each feature weighted by the model's use of it (shares summing to 1)."""
    weights = profile.get("importance") or {}
    return float(sum(weights.get(name, 0.0) * value for name, value in values.items()))


def save_reference(storage: Storage, config: PerennialConfig, profile: dict[str, Any]) -> str:
    key = catalog.key("reference", config, version=profile["version"])
    storage.write_json(key, profile)
    return key


def load_reference(storage: Storage, config: PerennialConfig, version: str) -> dict[str, Any]:
    key = catalog.key("reference", config, version=version)
    if not storage.exists(key):
        raise DriftError(
            f"{key} not found in {storage!r}: model v{version} of {config.model_name} has no "
            "reference profile (it was trained before drift monitoring existed); retrain it with "
            "`perennial train` to create one"
        )
    profile: dict[str, Any] = storage.read_json(key)
    return profile


# -- measuring a batch ------------------------------------------------------------------------


@dataclass
class DriftReport:
    dataset: str
    batch: str
    reference_version: str
    rows: int
    status: str
    psi: dict[str, float]  # per feature, plus PREDICTION for the champion's scores
    max_psi: float
    drifted_features: list[str]  # PSI at or above psi_alert
    warned_features: list[str]  # PSI at or above psi_warn, below psi_alert
    reasons: list[str] = field(default_factory=list)
    label: LabelShift | None = None
    # The champion's judged metric on the batch (`batch`) vs on its holdout (`holdout`), and how
    # much worse the batch is (`worsening`, positive = worse, whatever the metric's direction).
    performance: dict[str, float] | None = None
    estimated: Estimate | None = None  # the metric estimated before labels (estimate.py)
    labelled: dict[str, float] | None = None  # champion metrics on the labelled rows
    weighted_psi: float | None = None  # PSI weighted by the champion's use of each feature
    weighted_alert: float | None = None  # the calibrated threshold it is held against
    holdout_interval: list[float] | None = None  # the judged metric's interval on its holdout
    metric: str = "roc_auc"  # the judged metric (tasks/core/metrics.py), named in every reason
    seconds: float = 0.0
    # The champion's group metrics and gaps on the labelled rows (`fairness:`), as
    # tasks/registry/fairness.py `GroupReport.as_dict` gives them; absent from the JSON without
    # either (a dataset with no `fairness:` keeps its keys).
    fairness: dict[str, Any] | None = field(default=None, metadata=ABSENT_IF_NONE)

    def event_payload(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "max_psi": round(self.max_psi, 4),
            "drifted_features": self.drifted_features,
            "reference_version": self.reference_version,
            "reasons": self.reasons,
            "label": jsonable(self.label),
            "metric": self.metric,
            "estimated": self.estimated.value if self.estimated else None,
            "weighted_psi": None if self.weighted_psi is None else round(self.weighted_psi, 4),
        }


def unmonitored(config: PerennialConfig) -> list[str]:
    """Features left out of drift: the configured ones and, unless included, those derived from
    the time column (a month against a year-long reference always drifts in month and
    day_of_year: PSI 7-8 on the demo, an alert that says nothing)."""
    drift = config.drift
    return [*drift.exclude, *([] if drift.include_time_features else config.features.time)]


def feature_psi(profile: dict[str, Any], x: pd.DataFrame, exclude: list[str]) -> dict[str, float]:
    """PSI of each profiled feature of a batch's model inputs `x`."""
    missing = [c for c in [*profile["numeric"], *profile["categorical"]] if c not in x.columns]
    if missing:
        raise DriftError(
            f"columns {missing} of the v{profile['version']} reference profile are not in the "
            "batch: the features changed since that model; retrain to profile the new ones"
        )
    found = {}
    for column, ref in profile["numeric"].items():
        if column not in exclude:
            found[column] = psi(ref["shares"], numeric_shares(as_float(x, column), ref["edges"]))
    for column, ref in profile["categorical"].items():
        if column not in exclude:
            found[column] = psi(ref["shares"], categorical_shares(x[column], ref["categories"]))
    return found


def compare(
    profile: dict[str, Any],
    batch: str,
    x: pd.DataFrame,
    scores: np.ndarray,
    labels: pd.Series | None,
    drift: DriftConfig,
    holdout_value: float | None = None,
    labelled_value: float | None = None,
    exclude: list[str] | None = None,
    config: PerennialConfig | None = None,
) -> DriftReport:
    """Drift of a batch (model inputs `x`, champion `scores`, labels if known) vs a profile.

    `labelled_value` is the champion's judged metric (the profile's `metric`) on the batch's
    labelled rows, `holdout_value` the one it scored on its holdout when it was trained.
    `exclude` names the features not measured (default `drift.exclude`; see `unmonitored`);
    `config` names the classes of a multiclass label.
    """
    started = time.perf_counter()
    values = feature_psi(profile, x, drift.exclude if exclude is None else exclude)
    values[PREDICTION] = psi(
        profile["scores"]["shares"],
        numeric_shares(prediction_values(scores), profile["scores"]["edges"]),
    )
    ordered = dict(sorted(values.items(), key=lambda item: -item[1]))
    drifted = [name for name, v in ordered.items() if v >= drift.psi_alert]
    warned = [name for name, v in ordered.items() if drift.psi_warn <= v < drift.psi_alert]
    report = DriftReport(
        dataset=profile["dataset"],
        batch=batch,
        reference_version=str(profile["version"]),
        rows=len(x),
        status=OK,
        psi={name: round(v, 6) for name, v in ordered.items()},
        max_psi=max(ordered.values()),
        drifted_features=drifted,
        warned_features=warned,
        metric=str(profile.get("metric", "roc_auc")),
    )
    if labels is not None and len(labels):
        report.label = label_shift(profile, labels, config)
    known = labelled_value is not None and np.isfinite(labelled_value)
    if known and holdout_value is not None and labelled_value is not None:
        report.performance = {
            "batch": labelled_value,
            "holdout": holdout_value,
            "worsening": METRICS[report.metric].worsening(labelled_value, holdout_value),
        }
    if "importance" in profile:
        features = {k: v for k, v in values.items() if k != PREDICTION}
        report.weighted_psi = weighted_psi(profile, features)
        usual = profile.get("recent_weighted_psi", 0.0)
        report.weighted_alert = max(drift.weighted_psi_alert, drift.drift_factor * usual)
    # Profiles saved before every task had its metric named the interval after AUC.
    report.holdout_interval = profile.get("holdout_interval", profile.get("holdout_auc_interval"))
    report.status, report.reasons = judge(report, drift)
    report.seconds = time.perf_counter() - started
    return report


def judge(report: DriftReport, drift: DriftConfig) -> tuple[str, list[str]]:
    """Status and the reasons for it, in words a person reads in the UI or the event."""
    if report.rows < drift.min_rows:
        return TOO_FEW_ROWS, [f"{report.rows} rows < drift.min_rows {drift.min_rows}: not judged"]
    if report.performance and report.holdout_interval:
        return _judge_performance(report)
    if report.weighted_psi is not None and report.weighted_alert is not None:
        return _judge_weighted(report, drift)
    reasons = []
    if report.drifted_features:
        listed = ", ".join(f"{n} {report.psi[n]:.3f}" for n in report.drifted_features)
        reasons.append(f"PSI >= {drift.psi_alert}: {listed}")
    label = report.label
    if label and _label_drifted(label, drift):
        rule = (
            f"alert at {drift.label_shift_alert}"
            if label.statistic == POSITIVE_RATE
            else f"PSI {label.psi:.3f}, alert at {drift.psi_alert}"
        )
        number = shown if label.statistic == "mean" else _share
        reasons.append(
            f"label drift: {label.statistic} {number(label.batch_rate)} vs "
            f"{number(label.reference_rate)} in the reference (shift "
            f"{number(label.shift, True)}, {rule})"
        )
    # The old fixed drop rule is in AUC points: it judges AUC alone.
    if report.performance and report.metric == "roc_auc":
        perf = report.performance
        if perf["worsening"] >= drift.auc_drop_alert:
            reasons.append(
                f"champion AUC {perf['batch']:.4f} on the batch vs {perf['holdout']:.4f} on "
                f"its holdout (drop >= {drift.auc_drop_alert})"
            )
    if reasons:
        return ALERT, reasons
    if report.warned_features:
        listed = ", ".join(f"{n} {report.psi[n]:.3f}" for n in report.warned_features)
        return WARN, [f"PSI >= {drift.psi_warn}: {listed}"]
    return OK, [f"max PSI {report.max_psi:.3f} < {drift.psi_warn}"]


def _share(value: float, signed: bool = False) -> str:
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _label_drifted(label: LabelShift, drift: DriftConfig) -> bool:
    """A positive rate alerts on its shift; a mean or class shares on the PSI of the labels."""
    if label.statistic == POSITIVE_RATE:
        return abs(label.shift) >= drift.label_shift_alert
    return label.psi >= drift.psi_alert


def _judge_performance(report: DriftReport) -> tuple[str, list[str]]:
    """Labels known: the champion's metric on the batch against its holdout interval decides
    (below it for a metric where higher is better, above it for an error such as RMSE)."""
    judged = METRICS[report.metric]
    value = report.performance["batch"] if report.performance else float("nan")
    low, high = report.holdout_interval or [float("nan")] * 2
    where = (
        f"champion {judged.title} {shown(value)} on the batch, its holdout interval "
        f"[{shown(low)}, {shown(high)}]"
    )
    side = "below" if judged.higher_is_better else "above"
    worse = value < low if judged.higher_is_better else value > high
    if worse:
        return ALERT, [f"{where}: {side} it, the champion is worse here than when it was chosen"]
    moved = _moved(report)
    return (WARN if moved else OK), [f"{where}: not {side} it{moved}"]


def _judge_weighted(report: DriftReport, drift: DriftConfig) -> tuple[str, list[str]]:
    """No labels: drift weighted by the champion's use of each feature decides."""
    value, threshold = report.weighted_psi or 0.0, report.weighted_alert or 0.0
    top = sorted(
        ((n, v) for n, v in report.psi.items() if n in report.drifted_features), key=lambda i: -i[1]
    )
    listed = ", ".join(f"{n} {v:.3f}" for n, v in top[:5])
    where = (
        f"PSI weighted by the champion's use of each feature {value:.3f}, alert at {threshold:.3f}"
    )
    if value >= threshold:
        return ALERT, [f"{where}" + (f" (PSI >= {drift.psi_alert}: {listed})" if listed else "")]
    worse = _estimate_worse(report)
    if worse:
        return ALERT, [worse, where]
    moved = _moved(report)
    return (WARN if moved else OK), [f"{where}{moved}"]


def _estimate_worse(report: DriftReport) -> str | None:
    """The estimate's reason to alert: even its most favourable reading, given the errors it had
    on earlier labelled batches, is worse than the champion's holdout interval. None otherwise."""
    estimate, interval = report.estimated, report.holdout_interval
    if not interval or estimate is None or estimate.range is None:
        return None
    judged = METRICS[report.metric]
    low, high = estimate.range
    worse = high < interval[0] if judged.higher_is_better else low > interval[1]
    if not worse or estimate.corrected is None or estimate.past_errors is None:
        return None
    side = "below" if judged.higher_is_better else "above"
    return (
        f"champion {judged.title} estimated before labels {shown(estimate.corrected)} (range "
        f"{shown(low)} to {shown(high)} from its errors on {estimate.past_errors.batches} "
        f"earlier batches) {side} its holdout interval [{shown(interval[0])}, "
        f"{shown(interval[1])}]"
    )


def _moved(report: DriftReport) -> str:
    """What moved without putting the champion at risk, for the record (a warning)."""
    if not report.drifted_features:
        return ""
    listed = ", ".join(f"{n} {report.psi[n]:.3f}" for n in report.drifted_features[:5])
    return f"; moved, reported only: {listed}"
