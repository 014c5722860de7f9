"""Evaluate: score challenger and champion on the same holdout, and decide on promotion.

The promotion policy: a challenger is promoted only if it (1) passes sanity checks (finite
predictions, sane mean prediction, the floor: an AUC above `primary_floor`, or for regression
the naive baseline beaten by `min_skill`), (2) beats the champion by at least `min_improvement`
on the primary metric (and, with `require_significant`, the paired-bootstrap interval of the
gain lies above zero), and (3) worsens no guard metric (log loss, worst slice, mean bias)
beyond its tolerance. The first model needs only (1). Each task's metrics come from the metric
registry (tasks/core/metrics.py); the lines name them (binary lines keep the names `roc_auc`..).
The checks themselves are in tasks/registry/guards.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.core.config_promotion import PromotionConfig
from tasks.core.metrics import Metric, TaskKind, metric, paired_bootstrap_gain
from tasks.data.features import Datasets
from tasks.registry.guards import baseline_line, check_guard, sanity_failures
from tasks.registry.holdout import Metrics, metrics_from
from tasks.registry.metrics import scores
from tasks.registry.slices import aucs_of, slice_auc_gap, slice_aucs, slice_key, slice_metrics

if TYPE_CHECKING:
    from tasks.registry.client import VersionInfo

__all__ = [
    "Comparison",
    "Decision",
    "Metrics",
    "compare",
    "decide",
    "metrics_from",
    "sanity_failures",
]


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


def _said(judge: Metric, primary: str, task: TaskKind) -> str:
    """The primary metric as decision lines name it: its config name for a binary model (as
    its versions have always said), its title otherwise."""
    return primary if task == "binary" else judge.title


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

    `interval`: the paired-bootstrap interval of the primary gain (positive = better, whatever
    the metric's direction). `refit` (`split.refit_on_holdout`): the champion was refit on the
    batch that was its own holdout, so it saw the same batches as the challenger; the holdout
    then compares recipes (parameters), and what the challenger's refit adds, the holdout batch
    itself, no holdout can show. The primary bar becomes non-inferiority: the challenger is kept
    out only when it is worse by more than `min_improvement` and (given the bootstrap interval)
    beyond its noise. `champion_saw_holdout`: the champion was trained on the holdout itself (a
    run on an older range of batches): its numbers there are in-sample, so the challenger is
    kept out and the reasons say why."""
    judge, unit = metric(primary), challenger.unit
    said = _said(judge, primary, challenger.task)
    baseline = baseline_line(challenger, primary)
    failures = sanity_failures(challenger, primary, policy)
    if failures:
        reasons = [f"sanity: {f}" for f in failures]
        return Decision(False, reasons, blockers=list(reasons))
    if champion is None:
        value = challenger.get(primary)
        shown = f"{value:.4f}" if challenger.task == "binary" else judge.show(value, unit)
        first = f"first model: passes sanity checks, {said} {shown}"
        return Decision(True, [first] + ([baseline] if baseline else []))
    reasons, blockers, deltas = [], [], {}

    def block(reason: str) -> None:
        blockers.append(reason)
        reasons.append(reason)

    if baseline:
        reasons.append(baseline)
    change = challenger.get(primary) - champion.get(primary)
    gain = judge.gain(challenger.get(primary), champion.get(primary))
    deltas[primary] = change
    shown = f"{gain:+.4f}" if challenger.task == "binary" else judge.show(change, unit, True)
    if champion_saw_holdout:
        block(
            "the champion was trained on this holdout (its numbers here are in-sample): "
            "train with a batch it has not seen as the holdout"
        )
    if refit and not champion_saw_holdout:
        margin = policy.min_improvement
        worse = gain < -margin and (interval is None or interval[1] < 0)
        text = f"{said} {shown} against a champion that saw the same batches"
        if worse:
            block(f"{text}: worse by more than {margin} beyond the noise")
        else:
            reasons.append(f"{text}: not worse by more than {margin}; its refit adds the holdout")
    elif gain >= policy.min_improvement:
        better = "" if challenger.task == "binary" else f" (gain {gain:+.4g})"
        shown = f"+{gain:.4f}" if challenger.task == "binary" else shown
        reasons.append(f"{said} {shown}{better} >= required +{policy.min_improvement}")
    else:
        better = "" if challenger.task == "binary" else f" (gain {gain:+.4g})"
        block(f"{said} {shown}{better} < required +{policy.min_improvement}")
    if interval is not None:
        low, high = interval
        bounds = (
            f"[{low:+.4f}, {high:+.4f}]"
            if challenger.task == "binary"
            else f"[{judge.show(low, signed=True)}, {judge.show(high, unit, True)}]"
        )
        text = f"{policy.confidence:.0%} interval of the gain {bounds}"
        text = text if challenger.task == "binary" else f"{said}: {text}"
        if policy.require_significant and low <= 0:
            block(f"{text} includes zero (require_significant)")
        else:
            reasons.append(text)
    for guard in guards:
        outcome = check_guard(guard, challenger, champion, primary, policy)
        if not np.isnan(outcome.change):
            deltas[guard] = outcome.change
        (block if outcome.blocks else reasons.append)(outcome.reason)
    guarded = [b for b in blockers if b.startswith("guard ")]
    if guarded and interval is not None and interval[0] > 0 and len(guarded) == len(blockers):
        # Said in one line, first: the evidence for the challenger is strong and only a guard
        # stands in the way, which a person (or the replay) should weigh, not miss in a list.
        reasons.insert(
            0,
            f"kept out by a guard although its {said} gain {gain:+.4f} is significant "
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
    # The challenger per slice (tasks/registry/slices.py), and its best minus worst slice in the
    # primary metric: shown on the version and its card, not used by the decision.
    slice_metrics: list[dict[str, Any]] = field(default_factory=list)
    slice_gap: float = float("nan")


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
    task: TaskKind = "binary",
    baseline: float | None = None,
    unit: str = "",
) -> Comparison:
    """Challenger and champion on the same holdout, and the decision (`decide`, which says what
    `refit` and `champion_saw_holdout` change). `baseline`: regression, the training label's
    mean (the naive model of the floor)."""
    labels = np.asarray(y)
    key = slice_key(task, primary)

    def judged(model: Any) -> tuple[np.ndarray, Metrics]:
        found = scores(model, x, task)
        record = metrics_from(
            x, y, found, policy.slices, policy.min_slice_rows,
            task=task, primary=primary, baseline=baseline, unit=unit,
        )  # fmt: skip
        return found, record

    p_new, new = judged(challenger_model)
    per_slice = slice_metrics(x, labels, p_new, policy.slices, policy.min_slice_rows, task, primary)
    new_slices = aucs_of(per_slice, key)
    gap = slice_auc_gap(per_slice, key)
    if champion_model is None:
        table = [
            {"slice": k, f"challenger_{key}": v, f"champion_{key}": None}
            for k, v in new_slices.items()
        ]
        decision = decide(new, None, primary, guards, policy)
        return Comparison(new, None, decision, table, per_slice, gap)
    p_old, old = judged(champion_model)
    old_slices = slice_aucs(x, labels, p_old, policy.slices, policy.min_slice_rows, task, primary)
    table = [
        {"slice": k, f"challenger_{key}": v, f"champion_{key}": old_slices.get(k)}
        for k, v in new_slices.items()
    ]
    interval = None
    if policy.bootstrap_samples:
        interval = paired_bootstrap_gain(
            metric(primary), labels, p_new, p_old,
            policy.bootstrap_samples, policy.confidence, seed,
        )  # fmt: skip
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
        task=config.target.task,
        baseline=training_mean(data, config),
        unit=config.target.unit,
    )
    if champion is not None and champion_model is None:  # see `load_champion_task`
        comparison.decision.reasons.insert(
            0,
            f"champion v{champion.version} is a pickled model of an earlier Perennial, which "
            "no longer loads: judged as a first model, to replace it",
        )
    return comparison


def training_mean(data: Datasets, config: PerennialConfig) -> float | None:
    """Regression: the naive model's prediction, the mean label of the rows the challenger was
    fitted on (None for a classifier)."""
    if config.target.task != "regression":
        return None
    return float(np.asarray(data.y_fit, dtype=np.float64).mean())
