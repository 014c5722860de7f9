"""Fairness across groups: how a model treats each group of people that a sensitive column
(`fairness.sensitive`) names, and the promotion guard on the gaps between groups.

A model's decisions (score >= `fairness.threshold`) are measured per group with Fairlearn's
`MetricFrame`: selection rate, true and false positive rates, false negative rate, and each
group's size. A metric's gap for a column is its largest difference between two groups of that
column; groups smaller than `min_group_size` are reported but take no part in a gap (their rates
are noise). The guard keeps out a challenger that widens any gap by more than `tolerance` against
the champion on the same holdout rows, and says which in one line.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.core.config_fairness import FairnessConfig
from tasks.data.features import sensitive_groups
from tasks.registry.metrics import predict

# A metric is undefined in a group without the rows it counts: TPR and FNR need positives there,
# FPR negatives.
NEEDS = {"selection_rate": None, "tpr": "positives", "fnr": "positives", "fpr": "negatives"}


@dataclass
class GroupReport:
    """One model's group metrics on some labelled rows."""

    groups: list[dict[str, Any]]  # column, group, rows, judged, and each metric (NaN: undefined)
    gaps: dict[str, dict[str, float]]  # metric -> column -> largest gap among judged groups
    threshold: float
    min_group_size: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def largest(self, metric: str) -> tuple[str, float]:
        """The column with the metric's largest gap, and that gap (NaN when none is known)."""
        known = {c: g for c, g in self.gaps.get(metric, {}).items() if not math.isnan(g)}
        if not known:
            return "none", float("nan")
        column = max(known, key=known.__getitem__)
        return column, known[column]


def _metric_functions() -> dict[str, Any]:
    """Fairlearn's metrics by our names, plus the group's rows, positives and negatives; each
    takes the `sample_weight` that `group_report` passes (a cell's row count)."""
    from fairlearn.metrics import (
        false_negative_rate,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )

    def rows(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
        return float(np.sum(sample_weight))

    def positives(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
        return float(np.sum(np.asarray(sample_weight)[np.asarray(y_true) == 1]))

    def negatives(y_true: Any, y_pred: Any, sample_weight: Any) -> float:
        return float(np.sum(np.asarray(sample_weight)[np.asarray(y_true) == 0]))

    return {
        "selection_rate": selection_rate,
        "tpr": true_positive_rate,
        "fpr": false_positive_rate,
        "fnr": false_negative_rate,
        "rows": rows,
        "positives": positives,
        "negatives": negatives,
    }


def group_report(
    y: pd.Series | np.ndarray,
    scores: np.ndarray,
    groups: pd.DataFrame,
    config: FairnessConfig,
) -> GroupReport:
    """Each group's metrics (one `MetricFrame` per sensitive column) and each metric's gap.

    MetricFrame is given the count of rows of each (group, label, decision) cell as its sample
    weight, not the rows themselves: the rates are the same, and Fairlearn handles rows one by
    one in Python (12 s per metric for 1M rows; in cells, well under a second)."""
    from fairlearn.metrics import MetricFrame

    functions = _metric_functions()
    chosen = {name: functions[name] for name in [*config.metrics, "rows", "positives", "negatives"]}
    labels = np.asarray(y, dtype=np.int64)
    decisions = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0) >= config.threshold
    rows: list[dict[str, Any]] = []
    gaps: dict[str, dict[str, float]] = {metric: {} for metric in config.metrics}
    for column in groups.columns:
        cells = (
            pd.DataFrame({"group": groups[column].to_numpy(), "y": labels, "d": decisions})
            .value_counts(dropna=False)
            .reset_index(name="n")
        )
        weights = cells["n"].to_numpy(dtype=np.float64)
        frame = MetricFrame(
            metrics=chosen,
            y_true=cells["y"].to_numpy(),
            y_pred=cells["d"].to_numpy(dtype=np.int64),
            sensitive_features=cells["group"].to_numpy(),
            sample_params={name: {"sample_weight": weights} for name in chosen},
        ).by_group
        for metric in config.metrics:
            if (needed := NEEDS[metric]) is not None:
                frame.loc[frame[needed] == 0, metric] = np.nan
        judged = frame["rows"] >= config.min_group_size
        for group, values in frame.iterrows():
            rows.append(
                {
                    "column": column,
                    "group": str(group),
                    "rows": int(values["rows"]),
                    "judged": bool(judged[group]),
                    **{metric: float(values[metric]) for metric in config.metrics},
                }
            )
        for metric in config.metrics:
            known = frame.loc[judged, metric].dropna()
            gaps[metric][column] = float(known.max() - known.min()) if len(known) >= 2 else math.nan
    return GroupReport(rows, gaps, config.threshold, config.min_group_size)


class Verdict(Protocol):
    """What the guard adds to: a promotion decision (tasks/registry/evaluate.py)."""

    promote: bool
    reasons: list[str]
    blockers: list[str]
    deltas: dict[str, float]


@dataclass
class FairnessComparison:
    """Challenger and champion by group on the same holdout rows, and the guard's tolerance."""

    challenger: GroupReport
    champion: GroupReport | None
    tolerance: float
    widened: dict[str, float] = field(default_factory=dict)  # "tpr by sex" -> gap change

    def changes(self) -> dict[str, float]:
        """Challenger's gap minus champion's, per metric and column (both known)."""
        if self.champion is None:
            return {}
        found = {}
        for metric, by_column in self.challenger.gaps.items():
            for column, gap in by_column.items():
                theirs = self.champion.gaps.get(metric, {}).get(column, math.nan)
                if not (math.isnan(gap) or math.isnan(theirs)):
                    found[f"{metric} by {column}"] = gap - theirs
        return found

    def judge(self, decision: Verdict) -> None:
        """Add the guard's one line to the decision: a blocker when a gap widened beyond the
        tolerance, else a reason (with no champion, the challenger's largest gaps)."""
        if self.champion is None:
            decision.reasons.append(f"fairness (no champion to compare): {self.summary()}")
            return
        self.widened = self.changes()
        decision.deltas.update({f"fairness_gap {k}": v for k, v in self.widened.items()})
        if not self.widened:
            decision.reasons.append("guard fairness: no group large enough to compare")
            return
        # Rounded: 0.07 - 0.05 is 0.020000000000000004, which widens nothing beyond 0.02.
        over = {k: v for k, v in self.widened.items() if round(v, 12) > self.tolerance}
        worst = max(self.widened, key=self.widened.__getitem__)
        if not over:
            decision.reasons.append(
                f"guard fairness: largest widening {worst} {self.widened[worst]:+.4f} within "
                f"tolerance {self.tolerance}"
            )
            return
        metric, column = worst.split(" by ", 1)
        before = self.champion.gaps[metric][column]
        after = self.challenger.gaps[metric][column]
        others = [f"{k} {v:+.4f}" for k, v in over.items() if k != worst]
        line = (
            f"guard fairness: {metric} gap between {column} groups widened "
            f"{before:.4f} -> {after:.4f} ({after - before:+.4f}) > tolerance {self.tolerance}"
            + (f" (also {', '.join(others)})" if others else "")
        )
        decision.blockers.append(line)
        decision.reasons.append(line)
        decision.promote = False

    def summary(self) -> str:
        """The challenger's largest gap per metric, in a few words."""
        return gaps_text(self.challenger.gaps)


def gaps_text(gaps: dict[str, dict[str, float]]) -> str:
    """Each metric's largest gap and the column it is between groups of, in a few words."""
    report = GroupReport([], gaps, 0.5, 1)
    parts = []
    for metric in gaps:
        column, gap = report.largest(metric)
        parts.append(f"{metric} gap {_number(gap)} ({column})")
    return "; ".join(parts)


def labelled_fairness(
    frame: pd.DataFrame, y: pd.Series, scores: np.ndarray, config: PerennialConfig
) -> dict[str, Any] | None:
    """A model's group report on a batch's labelled rows (`frame`, aligned with `y` and
    `scores`), as plain data for the monitor's record; None without sensitive columns."""
    groups = sensitive_groups(frame, config)
    if groups is None:
        return None
    return group_report(y, scores, groups, config.fairness).as_dict()


def judge_fairness(
    decision: Verdict,
    challenger_model: Any,
    champion_model: Any | None,
    x: pd.DataFrame,
    y: pd.Series,
    groups: pd.DataFrame | None,
    config: FairnessConfig,
) -> FairnessComparison | None:
    """Both models by group on the holdout (`groups`: its sensitive columns, aligned with `x`),
    the guard's line added to `decision`; None when the config names no sensitive column."""
    if groups is None or not config.sensitive:
        return None
    mine = group_report(y, predict(challenger_model, x), groups, config)
    theirs = None
    if champion_model is not None:
        theirs = group_report(y, predict(champion_model, x), groups, config)
    comparison = FairnessComparison(mine, theirs, config.tolerance)
    comparison.judge(decision)
    return comparison


# -- where people read it: the version's metrics, its artifact, its model card ------------------


def metric_name(metric: str, column: str) -> str:
    """An MLflow metric name for a gap (MLflow allows letters, digits, _ - . / and spaces)."""
    return "holdout_fairness_gap_" + re.sub(r"[^A-Za-z0-9_.-]", "_", f"{metric}_{column}")


def version_metrics(comparison: FairnessComparison | None) -> dict[str, float]:
    """The challenger's gaps as metrics of its version (the champion's and the changes are in
    the decision's numbers)."""
    if comparison is None:
        return {}
    return {
        metric_name(metric, column): gap
        for metric, by_column in comparison.challenger.gaps.items()
        for column, gap in by_column.items()
    }


FAIRNESS_TAG = "perennial.fairness"


def fairness_tag(comparison: FairnessComparison) -> str:
    """The version tag: both models' gaps, their changes and the settings they were read with
    (each group's rows and rates are in the artifact `fairness/groups.csv`)."""
    return json.dumps(
        {
            "challenger": comparison.challenger.gaps,
            "champion": comparison.champion.gaps if comparison.champion else None,
            "changes": comparison.widened,
            "tolerance": comparison.tolerance,
            "threshold": comparison.challenger.threshold,
            "min_group_size": comparison.challenger.min_group_size,
        }
    )


def groups_csv(report: GroupReport) -> str:
    columns = ["column", "group", "rows", "judged", *report.gaps]
    return pd.DataFrame(report.groups, columns=columns).to_csv(index=False)


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def card_lines(comparison: FairnessComparison | None, against: str) -> list[str]:
    """The model card's fairness section: each group with its size and metrics, then each gap
    beside the champion's."""
    if comparison is None:
        return []
    report = comparison.challenger
    metrics = list(report.gaps)
    lines = [
        "",
        f"## Fairness by group (decisions at score >= {report.threshold}; groups under "
        f"{report.min_group_size} rows are shown, not judged)",
        f"| column | group | rows | judged | {' | '.join(metrics)} |",
        "|---|---|---|---|" + "---|" * len(metrics),
    ]
    for row in report.groups:
        values = " | ".join(_number(row[m]) for m in metrics)
        judged = "yes" if row["judged"] else "no"
        lines.append(f"| {row['column']} | {row['group']} | {row['rows']} | {judged} | {values} |")
    lines += ["", f"| gap (largest difference) | challenger | {against} | change |"]
    lines.append("|---|---|---|---|")
    for metric in metrics:
        for column, gap in report.gaps[metric].items():
            theirs = comparison.champion.gaps[metric].get(column) if comparison.champion else None
            change = comparison.widened.get(f"{metric} by {column}")
            lines.append(
                f"| {metric} by {column} | {_number(gap)} | {_number(theirs)} | "
                f"{'-' if change is None else f'{change:+.4f}'} |"
            )
    return lines
