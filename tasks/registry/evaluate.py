"""Evaluate: score challenger and champion on the same holdout, and decide on promotion.

The promotion policy: a challenger is promoted only if it (1) passes sanity checks (finite
predictions, sane mean prediction, primary metric above an absolute floor), (2) beats the
champion by at least `min_improvement` on the primary metric (and, with `require_significant`,
the paired-bootstrap interval of the gain lies above zero), and (3) worsens no guard metric
(log loss, worst-slice AUC) beyond its tolerance. The first model needs only (1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.core.config_promotion import PromotionConfig
from tasks.data.features import Datasets
from tasks.registry.fairness import FairnessComparison, judge_fairness
from tasks.registry.metrics import auc, paired_bootstrap, predict
from tasks.registry.slices import aucs_of, slice_auc_gap, slice_aucs, slice_metrics

if TYPE_CHECKING:
    from tasks.registry.client import VersionInfo

# For each metric: True when larger is better.
HIGHER_IS_BETTER = {"roc_auc": True, "log_loss": False, "worst_slice_auc": True}


@dataclass(frozen=True)
class Metrics:
    roc_auc: float
    log_loss: float
    mean_prediction: float
    label_rate: float
    rows: int
    finite: bool
    worst_slice_auc: float = float("nan")
    worst_slice: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def recorded(cls, record: dict[str, Any] | None) -> Metrics | None:
        """Metrics as a decision's tags recorded them (`perennial.decision_numbers`), or None
        when they hold none (a decision not recorded yet, or no champion to compare with)."""
        if not record:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in record.items() if name in known})


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)
    deltas: dict[str, float] = field(default_factory=dict)
    interval: tuple[float, float] | None = None  # bootstrap interval of the primary gain
    blockers: list[str] = field(default_factory=list)  # the reasons that kept the champion

    def summary(self) -> str:
        verdict = "promote" if self.promote else "keep champion"
        return f"{verdict}: " + "; ".join(self.reasons)


def metrics_from(
    x: pd.DataFrame,
    y: pd.Series,
    p: np.ndarray,
    slices: Sequence[str] = (),
    min_slice_rows: int = 200,
) -> Metrics:
    from sklearn.metrics import log_loss

    labels = np.asarray(y)
    finite = bool(np.isfinite(p).all())
    safe = np.nan_to_num(p, nan=0.5, posinf=1.0, neginf=0.0)
    per_slice = slice_aucs(x, labels, safe, slices, min_slice_rows)
    worst = min(per_slice, key=per_slice.__getitem__) if per_slice else "none"
    return Metrics(
        roc_auc=auc(labels, safe),
        log_loss=float(log_loss(labels, np.clip(safe, 1e-7, 1 - 1e-7), labels=[0, 1])),
        mean_prediction=float(safe.mean()),
        label_rate=float(labels.mean()),
        rows=len(labels),
        finite=finite,
        worst_slice_auc=per_slice.get(worst, float("nan")),
        worst_slice=worst,
    )


def sanity_failures(metrics: Metrics, primary: str, policy: PromotionConfig) -> list[str]:
    low, high = policy.positive_rate_bounds
    failures = []
    if not metrics.finite:
        failures.append("predictions are not all finite")
    if not low <= metrics.mean_prediction <= high:
        failures.append(f"mean prediction {metrics.mean_prediction:.3f} outside [{low}, {high}]")
    value = getattr(metrics, primary)
    if not value >= policy.primary_floor:
        failures.append(f"{primary} {value:.4f} below the floor {policy.primary_floor}")
    return failures


def decide(
    challenger: Metrics,
    champion: Metrics | None,
    primary: str,
    guards: Sequence[str],
    policy: PromotionConfig,
    interval: tuple[float, float] | None = None,
    refit: bool = False,
    champion_saw_holdout: bool = False,
) -> Decision:
    """Apply the promotion policy; every number behind the decision goes into the reasons.

    `refit` (`split.refit_on_holdout`): the champion was refit on the batch that was its own
    holdout, so it saw the same batches as the challenger; the holdout then compares recipes
    (parameters), and what the challenger's refit adds, the holdout batch itself, no holdout can
    show. The primary bar becomes non-inferiority: the challenger is kept out only when it is
    worse by more than `min_improvement` and (given the bootstrap interval) beyond its noise.
    `champion_saw_holdout`: the champion was trained on the holdout itself (a run on an older
    range of batches): its numbers there are in-sample, so the challenger is kept out and the
    reasons say why."""
    failures = sanity_failures(challenger, primary, policy)
    if failures:
        reasons = [f"sanity: {f}" for f in failures]
        return Decision(False, reasons, blockers=list(reasons))
    if champion is None:
        value = getattr(challenger, primary)
        return Decision(True, [f"first model: passes sanity checks, {primary} {value:.4f}"])
    reasons, blockers, deltas = [], [], {}

    def block(reason: str) -> None:
        blockers.append(reason)
        reasons.append(reason)

    gain = getattr(challenger, primary) - getattr(champion, primary)
    deltas[primary] = gain
    if champion_saw_holdout:
        block(
            "the champion was trained on this holdout (its numbers here are in-sample): "
            "train with a batch it has not seen as the holdout"
        )
    if refit and not champion_saw_holdout:
        margin = policy.min_improvement
        worse = gain < -margin and (interval is None or interval[1] < 0)
        text = f"{primary} {gain:+.4f} against a champion that saw the same batches"
        if worse:
            block(f"{text}: worse by more than {margin} beyond the noise")
        else:
            reasons.append(f"{text}: not worse by more than {margin}; its refit adds the holdout")
    elif gain >= policy.min_improvement:
        reasons.append(f"{primary} +{gain:.4f} >= required +{policy.min_improvement}")
    else:
        block(f"{primary} {gain:+.4f} < required +{policy.min_improvement}")
    if interval is not None:
        low, high = interval
        text = f"{policy.confidence:.0%} interval of the gain [{low:+.4f}, {high:+.4f}]"
        if policy.require_significant and low <= 0:
            block(f"{text} includes zero (require_significant)")
        else:
            reasons.append(text)
    tolerances: dict[str, float] = {str(k): v for k, v in policy.guard_tolerance.items()}
    for guard in guards:
        change = getattr(challenger, guard) - getattr(champion, guard)
        if np.isnan(change):
            reasons.append(f"guard {guard}: no slice large enough to compare")
            continue
        worsening = -change if HIGHER_IS_BETTER[guard] else change
        deltas[guard] = change
        tolerance = tolerances.get(guard, 0.0)
        if worsening > tolerance:
            block(f"guard {guard} worse by {worsening:.4f} > tolerance {tolerance}")
        else:
            reasons.append(f"guard {guard} {change:+.4f} within tolerance {tolerance}")
    guarded = [b for b in blockers if b.startswith("guard ")]
    if guarded and interval is not None and interval[0] > 0 and len(guarded) == len(blockers):
        # Said in one line, first: the evidence for the challenger is strong and only a guard
        # stands in the way, which a person (or the replay) should weigh, not miss in a list.
        reasons.insert(
            0,
            f"kept out by a guard although its {primary} gain {gain:+.4f} is significant "
            f"([{interval[0]:+.4f}, {interval[1]:+.4f}]): {'; '.join(guarded)}",
        )
    return Decision(not blockers, reasons, deltas, interval, blockers)


@dataclass
class Comparison:
    """Both models on the same holdout, and the decision."""

    challenger: Metrics
    champion: Metrics | None
    decision: Decision
    slices: list[dict[str, Any]] = field(default_factory=list)
    # The challenger per slice (AUC, positive rate, mean score, ECE, rows), and its best minus
    # worst slice AUC: shown on the version and its card, not used by the decision.
    slice_metrics: list[dict[str, Any]] = field(default_factory=list)
    slice_auc_gap: float = float("nan")
    # Both models by group of the `fairness.sensitive` columns (tasks/registry/fairness.py).
    fairness: FairnessComparison | None = None


def compare(
    challenger_model: Any,
    champion_model: Any | None,
    x: pd.DataFrame,
    y: pd.Series,
    primary: str,
    guards: Sequence[str],
    policy: PromotionConfig,
    seed: int,
    refit: bool = False,
    champion_saw_holdout: bool = False,
) -> Comparison:
    """Challenger and champion on the same holdout, and the decision (`decide`, which says what
    `refit` and `champion_saw_holdout` change)."""
    p_new = predict(challenger_model, x)
    new = metrics_from(x, y, p_new, policy.slices, policy.min_slice_rows)
    labels = np.asarray(y)
    per_slice = slice_metrics(x, labels, p_new, policy.slices, policy.min_slice_rows)
    new_slices = aucs_of(per_slice)
    gap = slice_auc_gap(per_slice)
    if champion_model is None:
        table = [
            {"slice": k, "challenger_auc": v, "champion_auc": None} for k, v in new_slices.items()
        ]
        decision = decide(new, None, primary, guards, policy)
        return Comparison(new, None, decision, table, per_slice, gap)
    p_old = predict(champion_model, x)
    old = metrics_from(x, y, p_old, policy.slices, policy.min_slice_rows)
    old_slices = slice_aucs(x, labels, p_old, policy.slices, policy.min_slice_rows)
    table = [
        {"slice": k, "challenger_auc": v, "champion_auc": old_slices.get(k)}
        for k, v in new_slices.items()
    ]
    interval = None
    if policy.bootstrap_samples and primary == "roc_auc":
        interval = paired_bootstrap(
            y, p_new, p_old, policy.bootstrap_samples, policy.confidence, seed
        )
    decision = decide(new, old, primary, guards, policy, interval, refit, champion_saw_holdout)
    return Comparison(new, old, decision, table, per_slice, gap)


@task(name="compare-on-holdout", cache_policy=NO_CACHE)
def compare_task(
    model: Any,
    champion_model: Any | None,
    champion: VersionInfo | None,
    data: Datasets,
    config: PerennialConfig,
) -> Comparison:
    """The run's challenger and the champion on the run's holdout, by the YAML's policy."""
    from tasks.registry.lineage import batches_seen

    saw = champion is not None and data.split.holdout in batches_seen(champion.tags)
    comparison = compare(
        model,
        champion_model,
        data.x_holdout,
        data.y_holdout,
        config.primary_metric,
        config.guard_metrics,
        config.promotion,
        config.hpo.seed,
        refit=config.split.refit_on_holdout,
        champion_saw_holdout=saw,
    )
    comparison.fairness = judge_fairness(
        comparison.decision,
        model,
        champion_model,
        data.x_holdout,
        data.y_holdout,
        data.groups_holdout,
        config.fairness,
    )
    if champion is not None and champion_model is None:  # see `load_champion_task`
        comparison.decision.reasons.insert(
            0,
            f"champion v{champion.version} is a pickled model of an earlier Perennial, which "
            "no longer loads: judged as a first model, to replace it",
        )
    return comparison
