"""Replay: what a retrain policy delivers over a dataset's history.

The model in production for batch m is the champion when m arrives; its AUC on m, once m's
labels are in, is the *realized* AUC. `replay` walks the batches in order: a first model on the
first `initial_batches`, then for each later batch the champion scores it, its labels arrive,
and the `Policy` may retrain (and promote) a model that serves from the next batch on.

In: a config (features, encoder, `split.max_train_rows`, `promotion:`), a `BatchData` (each
batch's features, labels and row times, read once by `load_batches` and shared by every policy),
a `Policy` and a seed. Out: a `ReplayResult` (realized AUC and champion version per batch, the
batches after which it alerted, retrained and promoted, seconds of training); `summarize` folds
the results of several seeds. Every policy trains with the same fixed XGBoost parameters
(`FIXED_PARAMS`, no search), so a comparison is about the policy, not the search.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.batches import local_times
from tasks.core.config import PerennialConfig
from tasks.data.features import features_and_label, newest_rows
from tasks.data.ingest import extract_from_source, read_raw
from tasks.learn.device import xgboost_module
from tasks.learn.model import (
    as_classifier,
    assemble,
    encode,
    fit_encoder,
    matrix_spec,
    native_params,
)
from tasks.learn.train import refit_rounds
from tasks.registry.evaluate import compare
from tasks.registry.metrics import auc_interval, predict

# benchmarks/cbpe.py's fixed parameters: no search, so every policy trains the same model kind.
FIXED_PARAMS: dict[str, Any] = {
    "max_depth": 6,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
}
# 100 rounds, not cbpe's 300: a replay of every policy fits dozens of models, a 150k-row fit
# costs about 5 s of CPU per 100 rounds here, and on a Jan-Nov fit (capped) scored on December
# 100 rounds did as well as 300 (AUC 0.707 against 0.704).
FIXED_ROUNDS = 100
NO_INTERVAL = (float("nan"), float("nan"))
# One XGBoost thread by default: a replay's fits are sequential, and on this shared 2-core machine
# (load average 8) a 150k-row fit took 13.7 s wall / 5 s CPU on one thread against 51 s / 20 s
# on two (threads spin waiting for each other), for the same trees.
DEFAULT_THREADS = 1


@dataclass(frozen=True)
class Observation:
    """What the monitor knows once a batch's labels are in: the champion's realized AUC on it,
    its scores, the labels and model inputs, and the champion's AUC on its own holdout with the
    bootstrap interval of that AUC (`promotion.bootstrap_samples`, `promotion.confidence`)."""

    batch: str
    realized_auc: float
    champion_holdout_auc: float
    champion_interval: tuple[float, float]
    scores: np.ndarray
    labels: np.ndarray
    features: pd.DataFrame
    champion_version: int
    served: tuple[float, ...] = ()  # the champion's realized AUC on each batch it served before


AlertRule = Callable[[Observation], bool]


def below_holdout_interval(observation: Observation) -> bool:
    """Default alert: the realized AUC fell below the low end of the champion's holdout interval
    (the batch scores worse than the noise of the holdout explains)."""
    return observation.realized_auc < observation.champion_interval[0]


def below_previous_batch(observation: Observation) -> bool:
    """The realized AUC fell below what the champion scored on the batch before (its holdout
    AUC on the first batch it serves) by more than the noise of a difference of two batch AUCs:
    sqrt(2) x the half-width of its holdout interval. A champion is judged against itself a
    month earlier, not against its holdout month alone, so one hard holdout month does not
    silence every later alert."""
    low, high = observation.champion_interval
    previous = observation.served[-1] if observation.served else observation.champion_holdout_auc
    return observation.realized_auc < previous - SQRT2 * (high - low) / 2


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


# The pipeline's own policy is `Policy("configured")`: the monitor alerts when the champion's AUC
# on a labelled batch is below its holdout interval (tasks/watch/drift.py), and the retrain it
# starts
# is promoted by the YAML's `promotion:` settings. A candidate for its defaults, measured by
# benchmarks/replay.py (issue #25): alert when the champion scores below its own previous batch
# by more than the noise of the difference, and, the champion being shown stale, promote a
# challenger that is not worse on the holdout (no minimum AUC gain; guards as configured).
PREVIOUS_BATCH_CANDIDATE = Policy(
    "configured",
    should_alert=below_previous_batch,
    on_alert={"min_improvement": 0.0},
    name="candidate_previous_batch",
)


@dataclass
class BatchData:
    """Labelled rows of each batch, featurised once: x (model inputs), y, and row times."""

    ids: list[str]
    x: dict[str, pd.DataFrame]
    y: dict[str, pd.Series]
    times: dict[str, pd.Series]

    def rows(self, batches: list[str], config: PerennialConfig) -> int:
        """How many rows `training_rows` gives."""
        count = sum(len(self.y[b]) for b in batches)
        cap = config.split.max_train_rows
        return count if cap is None else min(count, cap)

    def training_rows(
        self, batches: list[str], config: PerennialConfig
    ) -> tuple[pd.DataFrame, pd.Series]:
        """The batches' rows, capped at `split.max_train_rows` as training caps them (newest)."""
        x = pd.concat([self.x[b] for b in batches], ignore_index=True)
        y = pd.concat([self.y[b] for b in batches], ignore_index=True)
        times = pd.concat([self.times[b] for b in batches], ignore_index=True)
        kept = newest_rows(times.to_frame(config.time.column), config).index
        return x.loc[kept].reset_index(drop=True), y.loc[kept].reset_index(drop=True)


def batch_data(config: PerennialConfig, frames: dict[str, pd.DataFrame]) -> BatchData:
    """`BatchData` of raw batch frames (batch id -> frame as landed), in batch order."""
    data = BatchData(sorted(frames), {}, {}, {})
    for batch in data.ids:
        frame = frames[batch]
        x, y = features_and_label(frame, config)
        data.x[batch], data.y[batch] = x.reset_index(drop=True), y.reset_index(drop=True)
        times = local_times(frame.loc[x.index, config.time.column], config.time)
        data.times[batch] = times.reset_index(drop=True)
    return data


def load_batches(config: PerennialConfig, batches: list[str]) -> BatchData:
    """The batches as ingestion reads them from the dataset's source (the flights gate drops no
    row, so these are the validated rows). A package source keeps a Parquet copy of its tables
    under `config.home`: give a scratch home to leave a real one untouched."""
    frames = {}
    for batch in batches:
        raw, ext, _ = extract_from_source(config, batch)
        frames[batch] = read_raw(raw, ext)
    return batch_data(config, frames)


def auc(labels: np.ndarray | pd.Series, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    return float(roc_auc_score(labels, scores)) if len(np.unique(labels)) == 2 else float("nan")


@dataclass
class Champion:
    version: int
    model: Any
    holdout_auc: float  # on the newest batch it was not trained on (nan: not measured)
    holdout_interval: tuple[float, float]


@dataclass
class ReplayResult:
    policy: str
    seed: int
    holdout_shape: bool
    scored: list[str] = field(default_factory=list)  # batches served by a champion
    realized_auc: list[float] = field(default_factory=list)
    champion_version: list[int] = field(default_factory=list)  # 1: the first model
    alerted_after: list[str] = field(default_factory=list)  # batches whose labels triggered
    retrained_after: list[str] = field(default_factory=list)
    promoted_after: list[str] = field(default_factory=list)
    # configured: batch -> what kept its challenger out
    # (`tasks.registry.evaluate.Decision.blockers`)
    blocked: dict[str, list[str]] = field(default_factory=dict)
    train_seconds: float = 0.0

    @property
    def mean_realized_auc(self) -> float:
        return statistics.fmean(self.realized_auc)


def fit_pipeline(
    config: PerennialConfig,
    x: pd.DataFrame,
    y: pd.Series,
    params: dict[str, Any],
    rounds: int,
    threads: int,
) -> Any:
    """`tasks.learn.train.fit_model` on the local engine, with the thread count given rather than
    every core: the same encoder, matrix, booster parameters and pipeline."""
    xgb = xgboost_module()

    encoder = fit_encoder(config, x)
    matrix = xgb.QuantileDMatrix(
        encode(encoder, x), y.to_numpy(), **matrix_spec(encoder), nthread=threads
    )
    seed = config.hpo.seed
    booster = xgb.train(native_params(params, threads, seed), matrix, num_boost_round=rounds)
    return assemble(encoder, as_classifier(booster, params, rounds, threads, seed))


@dataclass
class ModelCache:
    """Fitted models by what determines them (batches, seed, rounds, threads, parameters, row
    cap) -> (model, seconds its fit took), and their scores on each batch. Policies often train
    the very same model (every_batch's after batch m is configured's challenger after m), so
    replays of one dataset and config may share a cache: it saves machine time only, each
    replay is still charged the seconds of every fit it uses."""

    fits: dict[tuple[Any, ...], tuple[Any, float]] = field(default_factory=dict)
    scores: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)


@dataclass
class _Run:
    """One replay's fixed inputs, and the training seconds it has been charged."""

    config: PerennialConfig
    data: BatchData
    params: dict[str, Any]
    rounds: int
    seed: int
    initial_batches: int
    threads: int
    models: ModelCache
    seconds: float = 0.0

    def fit(self, batches: list[str], refit: bool = False) -> Any:
        """A model on `batches`; `refit`: a judged model refit on its batches plus its holdout
        (the last of `batches`), its rounds scaled to the rows as training scales them."""
        rounds = self.rounds
        if refit:
            judged, refit_rows = (
                self.data.rows(batches[:-1], self.config),
                self.data.rows(batches, self.config),
            )
            rounds = refit_rounds(rounds, judged, refit_rows)
        shape = json.dumps(self.params, sort_keys=True), self.config.split.max_train_rows
        key = (tuple(batches), self.seed, rounds, self.threads, *shape)
        if key not in self.models.fits:
            x, y = self.data.training_rows(batches, self.config)
            started = time.perf_counter()
            model = fit_pipeline(self.config, x, y, self.params, rounds, self.threads)
            self.models.fits[key] = (model, time.perf_counter() - started)
        model, seconds = self.models.fits[key]
        self.seconds += seconds
        return model

    def score(self, model: Any, batch: str) -> np.ndarray:
        key = (id(model), batch)  # the cache holds the model: its id is not reused meanwhile
        if key not in self.models.scores:
            self.models.scores[key] = predict(model, self.data.x[batch])
        return self.models.scores[key]


def _install(
    run: _Run, candidate: Any, history: list[str], policy: Policy, version: int
) -> Champion:
    """A new champion from `candidate` (trained on all of `history` but its newest batch): its
    holdout numbers on that batch when the policy alerts on them, and the model refit on the
    whole history when the policy trains on the holdout too (the numbers stay the candidate's:
    the refit has no unseen batch left to be measured on)."""
    holdout_auc, interval = float("nan"), NO_INTERVAL
    if policy.kind == "configured":
        newest = history[-1]
        scores, labels = run.score(candidate, newest), run.data.y[newest]
        promotion = run.config.promotion
        confidence = policy.alert_confidence or promotion.confidence
        holdout_auc = auc(labels, scores)
        # As the monitor's profile records it (tasks.watch.drift.holdout_auc_interval), on cached
        # scores.
        interval = auc_interval(labels, scores, promotion.bootstrap_samples, confidence, run.seed)
    model = candidate if policy.holdout_shape else run.fit(history, refit=True)
    return Champion(version, model, holdout_auc, interval)


def _new_champion(run: _Run, history: list[str], policy: Policy, version: int) -> Champion:
    if not policy.holdout_shape and policy.kind != "configured":  # no holdout to measure
        return Champion(version, run.fit(history, refit=True), float("nan"), NO_INTERVAL)
    return _install(run, run.fit(history[:-1]), history, policy, version)


def _decide(
    run: _Run, policy: Policy, challenger: Any, champion: Champion, holdout: str
) -> list[str]:
    """Perennial's promotion decision (`tasks.registry.evaluate`), both models on the same holdout,
    with
    the policy's `on_alert` settings and `guards` (an alert asked for the challenger): what
    kept the challenger out (empty: promote)."""
    config = run.config
    x, y = run.data.x[holdout], run.data.y[holdout]
    promotion = config.promotion.model_copy(update=dict(policy.on_alert))
    guards = list(config.guard_metrics) if policy.guards is None else list(policy.guards)
    comparison = compare(
        challenger,
        champion.model,
        x,
        y,
        config.primary_metric,
        guards,
        promotion,
        run.seed,
        refit=not policy.holdout_shape,
    )
    return [] if comparison.decision.promote else comparison.decision.blockers


def _after_labels(
    run: _Run,
    policy: Policy,
    champion: Champion,
    history: list[str],
    observation: Observation,
    result: ReplayResult,
) -> Champion:
    """The champion for the next batch, once the labels of `history[-1]` are in."""
    batch = history[-1]
    labelled = len(history) - run.initial_batches  # labelled batches since the first model
    scheduled = policy.kind == "every_batch" or (
        policy.kind == "every_k" and labelled % policy.k == 0
    )
    if scheduled:
        result.retrained_after.append(batch)
        result.promoted_after.append(batch)
        return _new_champion(run, history, policy, champion.version + 1)
    if policy.kind != "configured":
        return champion
    alert = policy.should_alert(observation)
    if alert:
        result.alerted_after.append(batch)
    if not alert and not (policy.scheduled and labelled % policy.scheduled == 0):
        return champion
    result.retrained_after.append(batch)
    challenger = run.fit(history[:-1])
    blockers = _decide(
        run, replace(policy, on_alert={}) if not alert else policy, challenger, champion, batch
    )
    if blockers:
        result.blocked[batch] = blockers
        return champion
    result.promoted_after.append(batch)
    return _install(run, challenger, history, policy, champion.version + 1)


def replay(
    config: PerennialConfig,
    data: BatchData,
    policy: Policy,
    seed: int,
    *,
    params: dict[str, Any] | None = None,
    rounds: int = FIXED_ROUNDS,
    initial_batches: int = 3,
    threads: int = DEFAULT_THREADS,
    models: ModelCache | None = None,
) -> ReplayResult:
    """Walk `data`'s batches under `policy`: a first model on the first `initial_batches`, then
    each later batch is scored by the champion of the moment *before* its labels can change
    anything (so no model ever scores a batch it was trained on), and the last batch's labels
    trigger nothing (no batch is left for a new model to serve). `seed`: XGBoost's and the
    bootstraps'. `models`: a cache shared with other replays of the same data (see ModelCache)."""
    if not 2 <= initial_batches < len(data.ids):
        raise ValueError(
            f"initial_batches={initial_batches} with {len(data.ids)} batches: the first model "
            "needs at least 2 (one to hold out) and at least one batch must be left to serve"
        )
    seeded = config.model_copy(update={"hpo": config.hpo.model_copy(update={"seed": seed})})
    cache = ModelCache() if models is None else models
    run = _Run(seeded, data, params or FIXED_PARAMS, rounds, seed, initial_batches, threads, cache)
    result = ReplayResult(policy.label, seed, policy.holdout_shape)
    champion = _new_champion(run, data.ids[:initial_batches], policy, version=1)
    served: list[float] = []  # the champion's realized AUCs so far
    for index in range(initial_batches, len(data.ids)):
        batch = data.ids[index]
        scores, labels = run.score(champion.model, batch), np.asarray(data.y[batch])
        realized = auc(labels, scores)
        result.scored.append(batch)
        result.realized_auc.append(realized)
        result.champion_version.append(champion.version)
        if index + 1 < len(data.ids):
            observation = Observation(
                batch,
                realized,
                champion.holdout_auc,
                champion.holdout_interval,
                scores,
                labels,
                data.x[batch],
                champion.version,
                tuple(served),
            )
            history = data.ids[: index + 1]
            version = champion.version
            champion = _after_labels(run, policy, champion, history, observation, result)
            served = [] if champion.version != version else [*served, realized]
    result.train_seconds = run.seconds
    return result


@dataclass
class PolicySummary:
    """One policy over several seeds: means, and the spread of the mean realized AUC."""

    policy: str
    seeds: list[int]
    mean_realized_auc: float
    interval_t95: tuple[float, float]  # 95% t interval of the per-seed means
    seed_min: float
    seed_max: float
    per_batch_realized_auc: dict[str, float]  # mean over seeds
    retrains: float  # means over seeds
    promotions: float
    alerts: float
    train_seconds: float


def summarize(results: list[ReplayResult]) -> PolicySummary:
    """Fold the replays of one policy under several seeds."""
    from scipy import stats

    means = [r.mean_realized_auc for r in results]
    mean = statistics.fmean(means)
    half = float("nan")
    if len(means) > 1:
        half = stats.t.ppf(0.975, len(means) - 1) * statistics.stdev(means) / len(means) ** 0.5
    per_batch = np.mean([r.realized_auc for r in results], axis=0)
    return PolicySummary(
        policy=results[0].policy,
        seeds=[r.seed for r in results],
        mean_realized_auc=mean,
        interval_t95=(mean - half, mean + half),
        seed_min=min(means),
        seed_max=max(means),
        per_batch_realized_auc=dict(zip(results[0].scored, per_batch.tolist(), strict=True)),
        retrains=statistics.fmean(len(r.retrained_after) for r in results),
        promotions=statistics.fmean(len(r.promoted_after) for r in results),
        alerts=statistics.fmean(len(r.alerted_after) for r in results),
        train_seconds=statistics.fmean(r.train_seconds for r in results),
    )


# -- `perennial replay`: the policies over a dataset's validated history ------------------------

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


@dataclass
class PolicyRecord:
    """One policy over every seed, as `perennial replay` prints it and the report page draws
    it: the mean realized AUC per batch, its mean and the 95% interval over seeds, and the mean
    counts per seed."""

    per_batch: list[float]
    mean_realized_auc: float
    interval: list[float]
    retrains: float
    promotions: float
    alerts: float
    train_seconds: float


@dataclass
class ReplaySummary:
    """What `perennial replay` returns and stores (`reports/<dataset>/replay.json`)."""

    dataset: str
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
            per_batch=list(summary.per_batch_realized_auc.values()),
            mean_realized_auc=summary.mean_realized_auc,
            interval=list(summary.interval_t95),
            retrains=summary.retrains,
            promotions=summary.promotions,
            alerts=summary.alerts,
            train_seconds=summary.train_seconds,
        )
    return ReplaySummary(
        dataset=config.dataset,
        batches=results[0].scored if results else [],
        seeds=sorted({r.seed for r in results}),
        policies=policies,
        seconds=round(seconds, 1),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


@task(name="load-history", cache_policy=NO_CACHE)
def load_history_task(config: PerennialConfig, batches: list[str]) -> BatchData:
    """The validated batches (the gate passed them) as the replay reads them."""
    from tasks.core import catalog
    from tasks.core.storage import open_storage

    storage = open_storage(config.home)
    frames = {b: storage.read_parquet(catalog.key("validated", config, batch=b)) for b in batches}
    return batch_data(config, frames)


@task(name="replay-policy", cache_policy=NO_CACHE)
def replay_policy_task(
    config: PerennialConfig, data: BatchData, name: str, seed: int
) -> ReplayResult:
    from tasks.core.run_logging import run_logger

    result = replay(config, data, policies(config)[name], seed)
    run_logger().info(
        "replay %s seed %d: realized AUC %.4f, %d retrains, %d promotions, %d alerts",
        name,
        seed,
        result.mean_realized_auc,
        len(result.retrained_after),
        len(result.promoted_after),
        len(result.alerted_after),
    )
    return result


@task(name="save-replay", cache_policy=NO_CACHE)
def save_replay_task(config: PerennialConfig, results: list[ReplayResult]) -> ReplaySummary:
    from tasks.core import catalog
    from tasks.core.results import jsonable
    from tasks.core.storage import open_storage

    record = summary_record(config, results, sum(r.train_seconds for r in results))
    open_storage(config.home).write_json(catalog.key("replay", config), jsonable(record))
    return record
