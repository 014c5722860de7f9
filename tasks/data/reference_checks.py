"""The gate's reference checks: how each column varied among the reference batches, and a new
batch held against that.

Fixed ranges (`tasks/data/suite.py`) catch values no batch should hold. They miss a batch whose
values are each plausible but whose make-up is wrong: a feature that is empty in every row, a
small share of values off by orders of magnitude, one label for every row, or a feature in other
units. `perennial validate --profile` therefore records, per reference batch, the statistics
such faults move, in the suite's meta (`reference_profile`, reviewed with the suite):

- each feature's null share;
- each numeric feature's median, its scale (the 1st-99th percentile span of the pooled
  reference) and the share of values far outside the pooled bulk (`OUTLIER_SCALES` scales);
- relations between numeric features that hold in every reference row and bind (A >= B with
  A == B in some rows, such as temperature >= dew point), and the median of their gap;
- the label's positive rate.

At the gate a batch fails when a statistic leaves the reference batches' own range by more
than a margin (the constants below, times `validation.reference_margin`). Medians of columns
the YAML declares `validation.seasonal` only warn: seasons move them as far as a change of units
would (July's median temperature is 40 F above January's). A change of units in a seasonal
column is caught by its relations instead: Celsius temperatures fall below Fahrenheit dew
points, and the gap's median is not seasonal. The defaults pass every month of 2013 against a
January-March reference and refuse each fault above (tests/integration/test_gate_reference.py).
"""

from __future__ import annotations

from itertools import permutations
from typing import Any

import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.data.expectations import Outcome, profile_command
from tasks.data.label_checks import (  # noqa: F401 (LABEL_RATE: the rule's name, re-exported)
    LABEL_RATE,
    Measure,
    draft_label,
    label_measures,
)
from tasks.data.reference_stats import (
    bulk,
    logit,
    numbers,
    outside,
    rounded,
    scale,
    sigmoid,
    value_range,
)

PROFILE_KEY = "reference_profile"  # where the profile lives in the suite's meta
NULL_SHARE, OUTLIERS, MEDIAN = "reference_null_share", "reference_outliers", "reference_median"
RELATION, RELATION_GAP = "reference_relation", "reference_gap"

NULL_MARGIN = 0.05  # null share may exceed the reference's worst batch by 5 points...
NULL_LOGIT_MARGIN = 3.0  # ... or by 3 log-odds (a column 75 % null in the reference may reach 98 %)
OUTLIER_MARGIN = 0.001  # share of such values allowed above the reference's worst batch
MEDIAN_MARGIN = 0.15  # median may leave the reference's range by 15 % of the reference scale
RELATION_MARGIN = 0.001  # share of rows allowed to break a relation, above the reference's
RELATION_BINDS = 0.02  # a relation binds when 1 % of rows have a gap within 2 % of its scale
# Fewer reference batches than this show no batch-to-batch range of a median: medians (and gap
# medians) then only warn. A one-month reference of a weather dataset refused the next month.
MIN_LOCATION_BATCHES = 3


# -- drafting --------------------------------------------------------------------------------


def draft_profile(reference: list[pd.DataFrame], config: PerennialConfig) -> dict[str, Any]:
    """The reference profile of typed reference batches (one frame per batch)."""
    numeric = [c for c in config.features.numeric if c in reference[0].columns]
    pooled = pd.concat(reference, ignore_index=True)
    columns: dict[str, Any] = {}
    for column in [*numeric, *config.features.categorical]:
        if column in pooled.columns:
            columns[column] = {
                "null_share": value_range(f[column].isna().mean() for f in reference)
            }
    for column in numeric:
        columns[column].update(_numeric_profile(reference, pooled, column))
    return {
        "batches": len(reference),
        "columns": columns,
        "relations": _binding_relations(reference, pooled, numeric),
        "label": draft_label(reference, config),
    }


def _numeric_profile(
    reference: list[pd.DataFrame], pooled: pd.DataFrame, column: str
) -> dict[str, Any]:
    values = numbers(pooled[column])
    if values.empty:
        return {}
    spread = scale(values)
    low, high = bulk(values, spread)
    return {
        "median": value_range(numbers(f[column]).median() for f in reference),
        "scale": spread,
        "bulk": [low, high],
        "outlier_share": value_range(outside(numbers(f[column]), low, high) for f in reference),
    }


def _binding_relations(
    reference: list[pd.DataFrame], pooled: pd.DataFrame, numeric: list[str]
) -> list[dict[str, Any]]:
    """Pairs (A, B) with A >= B in every reference row where both are known, A == B in some, and
    A within `RELATION_BINDS` of the gap's scale above B in at least 1 % of them: a law of the
    data (dew point never above temperature), not a coincidence of magnitudes (pressure above
    temperature, seats above rainfall)."""
    found = []
    for greater, lesser in permutations(numeric, 2):
        gap = (numbers(pooled[greater]) - numbers(pooled[lesser])).dropna()
        if len(gap) < 100 or (gap < 0).any():
            continue
        spread = scale(gap)
        if float(gap.min()) > 0 or float(gap.quantile(0.01)) > RELATION_BINDS * spread:
            continue
        gaps = [numbers(f[greater]) - numbers(f[lesser]) for f in reference]
        found.append(
            {
                "greater": greater,
                "lesser": lesser,
                "broken_share": value_range(float((g.dropna() < 0).mean()) for g in gaps),
                "gap_median": value_range(g.median() for g in gaps),
                "gap_scale": spread,
            }
        )
    return found


# -- the gate --------------------------------------------------------------------------------


def check_reference(
    frame: pd.DataFrame, meta: dict[str, Any], config: PerennialConfig, batch: str
) -> list[Outcome]:
    """The batch's outcomes against the suite's reference profile (none without one).
    Severities are critical, or warning for the median of a seasonal column and for every
    median when the reference has fewer than `MIN_LOCATION_BATCHES` batches; the YAML's
    `validation.severity` applies on top, as for every expectation."""
    profile = meta.get(PROFILE_KEY)
    if not profile:
        return []
    judge = _Judge(config, batch, list(meta.get("reference_batches") or []))
    settled = profile.get("batches", 0) >= MIN_LOCATION_BATCHES
    seasonal = set(config.validation.seasonal)
    outcomes = []
    for column, stats in profile["columns"].items():
        if column not in frame.columns:
            continue  # the suite's column-set expectation reports it
        outcomes.append(judge.null_share(frame[column], column, stats))
        values = numbers(frame[column]).dropna() if "median" in stats else None
        if values is not None and not values.empty:
            outcomes.append(judge.outliers(values, column, stats))
            warn_only = column in seasonal or not settled
            outcomes.append(judge.median(values, column, stats, warn_only))
    for relation in profile.get("relations", []):
        greater, lesser = relation["greater"], relation["lesser"]
        if greater in frame.columns and lesser in frame.columns:
            gap = (numbers(frame[greater]) - numbers(frame[lesser])).dropna()
            if not gap.empty:
                broken, moved = judge.relation(gap, relation)
                if not settled:
                    moved.severity = "warning"
                outcomes += [broken, moved]
    for measure in label_measures(frame, profile.get("label") or {}, config, judge.margin):
        outcome = judge.outcome_of(measure)
        if measure.warn_only or (not settled and measure.location):
            outcome.severity = "warning"
        outcomes.append(outcome)
    return outcomes


class _Judge:
    """Builds each outcome and, for a failure, the sentence that names the column, the
    statistic, the batch's value, the allowed range and the reference's own range."""

    def __init__(self, config: PerennialConfig, batch: str, reference: list[str]) -> None:
        self.margin = config.validation.reference_margin
        self.config, self.batch, self.reference = config, batch, reference

    def null_share(self, column: pd.Series, name: str, stats: dict[str, Any]) -> Outcome:
        share, (low, high) = float(column.isna().mean()), stats["null_share"]
        allowed = max(
            high + NULL_MARGIN * self.margin,
            sigmoid(logit(high) + NULL_LOGIT_MARGIN * self.margin),
        )
        return self._outcome(NULL_SHARE, name, share, (0.0, allowed), (low, high), "null share")

    def outliers(self, values: pd.Series, name: str, stats: dict[str, Any]) -> Outcome:
        low, high = stats["bulk"]
        share = outside(values, low, high)
        seen = stats["outlier_share"]
        allowed = (0.0, seen[1] + OUTLIER_MARGIN * self.margin)
        what = f"share of values outside [{low:g}, {high:g}]"
        return self._outcome(OUTLIERS, name, share, allowed, (seen[0], seen[1]), what)

    def median(
        self, values: pd.Series, name: str, stats: dict[str, Any], warn_only: bool
    ) -> Outcome:
        low, high = stats["median"]
        room = MEDIAN_MARGIN * self.margin * stats["scale"]
        outcome = self._outcome(
            MEDIAN, name, float(values.median()), (low - room, high + room), (low, high), "median"
        )
        if warn_only:  # declared seasonal (its relations catch other units), or too few batches
            outcome.severity = "warning"
        return outcome

    def relation(self, gap: pd.Series, relation: dict[str, Any]) -> list[Outcome]:
        pair = f"{relation['greater']}, {relation['lesser']}"
        broken, seen = float((gap < 0).mean()), relation["broken_share"]
        rule = f"share of rows with {relation['greater']} < {relation['lesser']}"
        allowed = (0.0, seen[1] + RELATION_MARGIN * self.margin)
        low, high = relation["gap_median"]
        room = MEDIAN_MARGIN * self.margin * relation["gap_scale"]
        gap_rule = f"median of {relation['greater']} - {relation['lesser']}"
        return [
            self._outcome(RELATION, pair, broken, allowed, (seen[0], seen[1]), rule),
            self._outcome(
                RELATION_GAP,
                pair,
                float(gap.median()),
                (low - room, high + room),
                (low, high),
                gap_rule,
            ),
        ]

    def outcome_of(self, measure: Measure) -> Outcome:
        """A label measure's outcome; its own message, when it has one, replaces the generic."""
        outcome = self._outcome(
            measure.rule,
            measure.column,
            measure.value,
            measure.allowed,
            measure.seen,
            measure.statistic,
        )
        if not outcome.success and measure.message:
            outcome.message = measure.message
        return outcome

    def _outcome(
        self,
        rule: str,
        column: str,
        value: float,
        allowed: tuple[float, float],
        seen: tuple[float, float],
        statistic: str,
    ) -> Outcome:
        """The outcome; a failure's message names the column, the statistic, the batch's value,
        the allowed range, the reference's own range and the command that re-profiles."""
        passed = bool(allowed[0] <= value <= allowed[1])
        outcome = Outcome(rule, column, "critical", passed, observed=rounded(value))
        if passed:
            return outcome
        batches = self.reference
        drafted = f" ({batches[0]}..{batches[-1]})" if batches else ""
        again = profile_command(self.config, [*batches, self.batch]) if batches else None
        advice = (
            f"if this is normal, re-profile over a longer reference: {again}"
            if again
            else "if this is normal, re-profile with `perennial validate --profile`"
        )
        outcome.message = (
            f"{column}: {statistic} {value:.4g} outside the allowed [{allowed[0]:.4g}, "
            f"{allowed[1]:.4g}]; the reference batches{drafted} ranged {seen[0]:.4g} to "
            f"{seen[1]:.4g}; {advice}"
        )
        return outcome
