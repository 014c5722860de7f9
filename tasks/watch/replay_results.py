"""What a replay delivers (`ReplayResult`: the realized judged metric and champion version per
batch, the
batches after which it alerted, retrained and promoted, seconds of training), the results of one
policy over several seeds folded (`summarize`), and the summary `perennial replay` stores for the
report page."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.config import PerennialConfig
from tasks.core.storage import open_storage


@dataclass
class ReplayResult:
    policy: str
    seed: int
    holdout_shape: bool
    scored: list[str] = field(default_factory=list)  # batches served by a champion
    realized: list[float] = field(default_factory=list)
    champion_version: list[int] = field(default_factory=list)  # 1: the first model
    alerted_after: list[str] = field(default_factory=list)  # batches whose labels triggered
    retrained_after: list[str] = field(default_factory=list)
    promoted_after: list[str] = field(default_factory=list)
    # configured: batch -> what kept its challenger out
    # (`tasks.registry.evaluate.Decision.blockers`)
    blocked: dict[str, list[str]] = field(default_factory=dict)
    train_seconds: float = 0.0

    @property
    def mean_realized(self) -> float:
        return statistics.fmean(self.realized)


@dataclass
class PolicySummary:
    """One policy over several seeds: means, and the spread of the mean realized metric."""

    policy: str
    seeds: list[int]
    mean_realized: float
    interval_t95: tuple[float, float]  # 95% t interval of the per-seed means
    seed_min: float
    seed_max: float
    per_batch_realized: dict[str, float]  # mean over seeds
    retrains: float  # means over seeds
    promotions: float
    alerts: float
    train_seconds: float


def summarize(results: list[ReplayResult]) -> PolicySummary:
    """Fold the replays of one policy under several seeds."""
    from scipy import stats

    means = [r.mean_realized for r in results]
    mean = statistics.fmean(means)
    half = float("nan")
    if len(means) > 1:
        half = stats.t.ppf(0.975, len(means) - 1) * statistics.stdev(means) / len(means) ** 0.5
    per_batch = np.mean([r.realized for r in results], axis=0)
    return PolicySummary(
        policy=results[0].policy,
        seeds=[r.seed for r in results],
        mean_realized=mean,
        interval_t95=(mean - half, mean + half),
        seed_min=min(means),
        seed_max=max(means),
        per_batch_realized=dict(zip(results[0].scored, per_batch.tolist(), strict=True)),
        retrains=statistics.fmean(len(r.retrained_after) for r in results),
        promotions=statistics.fmean(len(r.promoted_after) for r in results),
        alerts=statistics.fmean(len(r.alerted_after) for r in results),
        train_seconds=statistics.fmean(r.train_seconds for r in results),
    )


@dataclass
class PolicyRecord:
    """One policy over every seed, as `perennial replay` prints it and the report page draws
    it: the mean realized metric per batch, its mean and the 95% interval over seeds, and the mean
    counts per seed."""

    per_batch: list[float]
    mean_realized: float
    interval: list[float]
    retrains: float
    promotions: float
    alerts: float
    train_seconds: float


@dataclass
class ReplaySummary:
    """What `perennial replay` returns and stores (`reports/<dataset>/replay.json`)."""

    dataset: str
    metric: str  # the judged metric realized (tasks/core/metrics.py), e.g. roc_auc, rmse
    batches: list[str]  # the batches scored
    seeds: list[int]
    policies: dict[str, PolicyRecord]
    seconds: float
    generated_at: str


def summary_record(
    config: PerennialConfig, results: list[ReplayResult], seconds: float
) -> ReplaySummary:
    """The stored summary (`reports/<dataset>/replay.json`, drawn by the report page) of the
    replays of every policy under every seed."""
    from datetime import UTC, datetime

    by_policy: dict[str, list[ReplayResult]] = {}
    for result in results:
        by_policy.setdefault(result.policy, []).append(result)
    policies = {}
    for name, found in by_policy.items():
        summary = summarize(found)
        policies[name] = PolicyRecord(
            per_batch=list(summary.per_batch_realized.values()),
            mean_realized=summary.mean_realized,
            interval=list(summary.interval_t95),
            retrains=summary.retrains,
            promotions=summary.promotions,
            alerts=summary.alerts,
            train_seconds=summary.train_seconds,
        )
    return ReplaySummary(
        dataset=config.dataset,
        metric=config.primary_metric,
        batches=results[0].scored if results else [],
        seeds=sorted({r.seed for r in results}),
        policies=policies,
        seconds=round(seconds, 1),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


@task(name="save-replay", cache_policy=NO_CACHE)
def save_replay_task(config: PerennialConfig, results: list[ReplayResult]) -> ReplaySummary:
    from tasks.core.results import jsonable

    record = summary_record(config, results, sum(r.train_seconds for r in results))
    open_storage(config.home).write_json(catalog.key("replay", config), jsonable(record))
    return record
