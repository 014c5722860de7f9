"""Retrain policies: when a policy retrains (every batch, never, every k batches, or as the pipeline
does: on the monitor's alert and on the monthly schedule, each retrain decided by `promotion:`),
and the alert rules it may use, judged on what the monitor knows once a batch's labels are in
(`Observation`). `policies` are what `perennial replay` compares (`tasks/watch/replay.py`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig


@dataclass(frozen=True)
class Observation:
    """What the monitor knows once a batch's labels are in: the champion's realized metric on it
    (the judged one: AUC, RMSE, ...), its scores, the labels and model inputs, and the
    champion's value of that metric on its own holdout with its bootstrap interval
    (`promotion.bootstrap_samples`, `promotion.confidence`). `higher_is_better`: the metric's
    direction (False for an error such as RMSE)."""

    batch: str
    realized: float
    champion_holdout: float
    champion_interval: tuple[float, float]
    scores: np.ndarray
    labels: np.ndarray
    features: pd.DataFrame
    champion_version: int
    served: tuple[float, ...] = ()  # the champion's realized metric on each batch it served before
    higher_is_better: bool = True

    def worse(self, value: float, than: float) -> bool:
        """`value` is worse than `than` in the metric's direction."""
        return value < than if self.higher_is_better else value > than


AlertRule = Callable[[Observation], bool]


def below_holdout_interval(observation: Observation) -> bool:
    """Default alert: the realized metric is worse than the champion's holdout interval (below
    its low end for AUC, above its high end for RMSE): the batch scores worse than the noise of
    the holdout explains."""
    low, high = observation.champion_interval
    return observation.worse(observation.realized, low if observation.higher_is_better else high)


def below_previous_batch(observation: Observation) -> bool:
    """The realized metric is worse than what the champion scored on the batch before (its
    holdout value on the first batch it serves) by more than the noise of a difference of two:
    sqrt(2) x the half-width of its holdout interval. A champion is judged against itself a
    month earlier, not against its holdout month alone, so one hard holdout month does not
    silence every later alert."""
    low, high = observation.champion_interval
    previous = observation.served[-1] if observation.served else observation.champion_holdout
    noise = SQRT2 * (high - low) / 2
    bar = previous - noise if observation.higher_is_better else previous + noise
    return observation.worse(observation.realized, bar)


SQRT2 = 2**0.5

PolicyKind = Literal["every_batch", "never", "every_k", "configured"]


@dataclass(frozen=True)
class Policy:
    """When to retrain. `holdout_shape`: Perennial's shape (the newest labelled batch is held out
    and never trained on); False trains on all labelled history (`configured` then still decides
    on the newest batch with a model that did not see it, and refits on all of it if promoted)."""

    kind: PolicyKind
    k: int = 3  # every_k: retrain once every k labelled batches
    holdout_shape: bool = True
    should_alert: AlertRule = below_holdout_interval  # configured only
    name: str = ""  # label in results; the kind when empty
    # configured: the confidence of the champion's holdout AUC interval the alert compares with
    # (None: `promotion.confidence`).
    alert_confidence: float | None = None
    # configured: `promotion:` settings replaced in the decision that follows an alert (the
    # champion has just scored below its own holdout interval), e.g. {"min_improvement": 0.0}.
    on_alert: Mapping[str, Any] = field(default_factory=dict)
    # configured: the guard metrics of that decision (None: the config's `guard_metrics`).
    guards: tuple[str, ...] | None = None
    # configured: also retrain on a schedule, once every `scheduled` labelled batches (the
    # training deployment's monthly schedule), each retrain decided by `promotion:`; None: only
    # on alerts.
    scheduled: int | None = None

    @property
    def label(self) -> str:
        return self.name or self.kind


# The pipeline's own policy is `Policy("configured")`: the monitor alerts when the champion's metric
# on a labelled batch is worse than its holdout interval (tasks/watch/drift.py), and the retrain it
# starts is promoted by the YAML's `promotion:` settings. A candidate for its defaults, measured by
# benchmarks/replay.py (issue #25): alert when the champion scores below its own previous batch
# by more than the noise of the difference, and, the champion being shown stale, promote a
# challenger that is not worse on the holdout (no minimum AUC gain; guards as configured).
PREVIOUS_BATCH_CANDIDATE = Policy(
    "configured",
    should_alert=below_previous_batch,
    on_alert={"min_improvement": 0.0},
    name="candidate_previous_batch",
)


# The training deployment (prefect.yaml) retrains monthly: how many batches a month holds.
BATCHES_PER_MONTH = {"month": 1, "week": 4, "day": 30}


def configured_policy(config: PerennialConfig) -> Policy:
    """The pipeline's own policy: the monitor's alert (below the champion's holdout interval)
    and the monthly scheduled retrain both start a retrain that `promotion:` decides on, in the
    YAML's training shape (`split.refit_on_holdout`)."""
    return Policy(
        "configured",
        scheduled=BATCHES_PER_MONTH[config.time.batch_period],
        holdout_shape=not config.split.refit_on_holdout,
    )


def policies(config: PerennialConfig) -> dict[str, Policy]:
    """What `perennial replay` compares: the pipeline's own policy and the plainest alternatives,
    all in the YAML's training shape."""
    shape = not config.split.refit_on_holdout
    return {
        "configured": configured_policy(config),
        "every_batch": Policy("every_batch", holdout_shape=shape),
        "never": Policy("never", holdout_shape=shape),
        "every_3": Policy("every_k", k=3, name="every_3", holdout_shape=shape),
    }


POLICY_NAMES = ["configured", "every_batch", "never", "every_3"]
