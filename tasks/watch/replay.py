"""Replay: what a retrain policy delivers over a dataset's history.

The model in production for batch m is the champion when m arrives; its judged metric (the
config's primary metric: AUC, macro AUC, RMSE, ...) on m, once m's labels are in, is the
*realized* one. `replay` walks the batches in order: a first model on the
first `initial_batches`, then for each later batch the champion scores it, its labels arrive,
and the `Policy` may retrain (and promote) a model that serves from the next batch on.

In: a config (features, encoder, `split.max_train_rows`, `promotion:`), a `BatchData` (each
batch's features, labels and row times, read once by `load_batches` and shared by every policy:
`tasks/watch/labelled_batches.py`), a `Policy` (`tasks/watch/retrain_policies.py`) and a seed.
Out: a `ReplayResult` (realized metric and champion version per batch, the batches after which it
alerted, retrained and promoted, seconds of training); `summarize` folds the results of several
seeds (`tasks/watch/replay_results.py`). Every policy trains with the same fixed XGBoost
parameters (`FIXED_PARAMS`, no search), so a comparison is about the policy, not the search.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.core.metrics import METRICS, bootstrap_interval
from tasks.learn.train import fit_model, refit_rounds
from tasks.registry.evaluate import compare
from tasks.watch.labelled_batches import BatchData
from tasks.watch.replay_results import ReplayResult
from tasks.watch.retrain_policies import Observation, Policy, policies
from tasks.watch.task_metrics import champion_scores, known_labels

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


@dataclass
class Champion:
    version: int
    model: Any
    holdout_value: (
        float  # the judged metric on the newest batch it was not trained on (nan: not measured)
    )
    holdout_interval: tuple[float, float]


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
            model = fit_model(x, y, self.params, rounds, self.config, self.threads)
            self.models.fits[key] = (model, time.perf_counter() - started)
        model, seconds = self.models.fits[key]
        self.seconds += seconds
        return model

    def score(self, model: Any, batch: str) -> np.ndarray:
        key = (id(model), batch)  # the cache holds the model: its id is not reused meanwhile
        if key not in self.models.scores:
            self.models.scores[key] = champion_scores(model, self.data.x[batch], self.config)
        return self.models.scores[key]

    def baseline(self, holdout: str) -> float | None:
        """Regression: the naive model's prediction for `holdout`, the mean label of the batches
        before it (what the challenger was fitted on); None for a classifier."""
        if self.config.target.task != "regression":
            return None
        before = self.data.ids[: self.data.ids.index(holdout)]
        _, y = self.data.training_rows(before, self.config)
        return float(np.asarray(y, dtype=np.float64).mean())

    def judged(self, labels: Any, scores: np.ndarray) -> float:
        """The judged metric (`primary_metric`) of scores against labels."""
        y, s = known_labels(labels, scores, self.config)
        return METRICS[self.config.primary_metric].compute(y, s)


def _install(
    run: _Run, candidate: Any, history: list[str], policy: Policy, version: int
) -> Champion:
    """A new champion from `candidate` (trained on all of `history` but its newest batch): its
    holdout numbers on that batch when the policy alerts on them, and the model refit on the
    whole history when the policy trains on the holdout too (the numbers stay the candidate's:
    the refit has no unseen batch left to be measured on)."""
    holdout_value, interval = float("nan"), NO_INTERVAL
    if policy.kind == "configured":
        newest = history[-1]
        scores, labels = run.score(candidate, newest), run.data.y[newest]
        promotion = run.config.promotion
        confidence = policy.alert_confidence or promotion.confidence
        holdout_value = run.judged(labels, scores)
        # As the monitor's profile records it (tasks.watch.task_metrics.holdout_interval), on
        # cached scores.
        y, s = known_labels(labels, scores, run.config)
        judge = METRICS[run.config.primary_metric]
        samples = promotion.bootstrap_samples
        interval = bootstrap_interval(judge, y, s, samples, confidence, run.seed)
    model = candidate if policy.holdout_shape else run.fit(history, refit=True)
    return Champion(version, model, holdout_value, interval)


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
        task=config.target.task,
        baseline=run.baseline(holdout),
        unit=config.target.unit,
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
    # Every fit in this process on the CPU, whatever the YAML's `training:` says (a replay fits
    # dozens of models in turn; `threads` is its only knob), with the replay's seed.
    here = config.training.model_copy(update={"engine": "local", "device": "cpu"})
    hpo = config.hpo.model_copy(update={"seed": seed})
    seeded = config.model_copy(update={"hpo": hpo, "training": here})
    cache = ModelCache() if models is None else models
    run = _Run(seeded, data, params or FIXED_PARAMS, rounds, seed, initial_batches, threads, cache)
    result = ReplayResult(policy.label, seed, policy.holdout_shape)
    champion = _new_champion(run, data.ids[:initial_batches], policy, version=1)
    served: list[float] = []  # the champion's realized metric so far
    for index in range(initial_batches, len(data.ids)):
        batch = data.ids[index]
        scores, labels = run.score(champion.model, batch), np.asarray(data.y[batch])
        realized = run.judged(labels, scores)
        result.scored.append(batch)
        result.realized.append(realized)
        result.champion_version.append(champion.version)
        if index + 1 < len(data.ids):
            observation = Observation(
                batch,
                realized,
                champion.holdout_value,
                champion.holdout_interval,
                scores,
                labels,
                data.x[batch],
                champion.version,
                tuple(served),
                higher_is_better=METRICS[config.primary_metric].higher_is_better,
            )
            history = data.ids[: index + 1]
            version = champion.version
            champion = _after_labels(run, policy, champion, history, observation, result)
            served = [] if champion.version != version else [*served, realized]
    result.train_seconds = run.seconds
    return result


@task(name="replay-policy", cache_policy=NO_CACHE)
def replay_policy_task(
    config: PerennialConfig, data: BatchData, name: str, seed: int
) -> ReplayResult:
    from tasks.core.run_logging import run_logger

    result = replay(config, data, policies(config)[name], seed)
    run_logger().info(
        "replay %s seed %d: realized %s %.4g, %d retrains, %d promotions, %d alerts",
        name,
        seed,
        METRICS[config.primary_metric].title,
        result.mean_realized,
        len(result.retrained_after),
        len(result.promoted_after),
        len(result.alerted_after),
    )
    return result
