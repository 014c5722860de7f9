"""Replay of retrain policies (tasks/watch/replay.py) on small synthetic batches whose labels
follow a
rule that changes from batch to batch: what a model can score depends on what it was trained
on, so the tests see which model served which batch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_dataset import FeaturesConfig, TargetConfig, TimeConfig
from tasks.learn.train import fit_model
from tasks.registry.metrics import auc, predict
from tasks.watch.labelled_batches import BatchData, batch_data
from tasks.watch.replay import ModelCache, replay
from tasks.watch.replay_results import summarize
from tasks.watch.retrain_policies import (
    Observation,
    Policy,
    below_holdout_interval,
    below_previous_batch,
)
from tests.conftest import FLIGHTS

MONTHS = [f"2013-{month:02d}" for month in range(1, 13)]
FEATURES = [f"f{i}" for i in range(12)]
PARAMS = {"max_depth": 3, "learning_rate": 0.3}
ROUNDS = 20
ROWS = 400


def synthetic_config() -> PerennialConfig:
    """The flights config, pointed at synthetic columns: f0..f11, a time, an outcome."""
    config = load_config(FLIGHTS)
    promotion = config.promotion.model_copy(update={"slices": [], "bootstrap_samples": 50})
    return config.model_copy(
        update={
            "features": FeaturesConfig(numeric=FEATURES, time=["day_of_week"]),
            "target": TargetConfig(name="synthetic", column="outcome", expression="outcome > 0"),
            "time": TimeConfig(column="when", batch_period="month", timezone="UTC"),
            "split": config.split.model_copy(update={"max_train_rows": None}),
            "promotion": promotion,
        }
    )


def month_frame(month: str, informative: str | None, seed: int) -> pd.DataFrame:
    """ROWS rows of `month`: features N(0, 1); the label is `informative > 0`, or a coin flip."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(ROWS, len(FEATURES))), columns=FEATURES)
    seconds = rng.choice(28 * 86_400, ROWS, replace=False)  # distinct: "newest" is one order
    frame["when"] = pd.Timestamp(f"{month}-01", tz="UTC") + pd.to_timedelta(seconds, unit="s")
    outcome = frame[informative] if informative else pd.Series(rng.normal(size=ROWS))
    frame["outcome"] = np.where(outcome > 0, 1.0, -1.0)
    return frame


def batches(rule: dict[str, str | None]) -> BatchData:
    """Batch id -> the feature its label follows (None: labels are noise)."""
    frames = {m: month_frame(m, rule[m], seed) for seed, m in enumerate(MONTHS)}
    return batch_data(synthetic_config(), frames)


@pytest.fixture(scope="module")
def own_feature() -> BatchData:
    """Batch i's label is f_i > 0: only a model trained on batch i can score it."""
    return batches(dict(zip(MONTHS, FEATURES, strict=True)))


@pytest.fixture(scope="module")
def cache() -> ModelCache:
    return ModelCache()


def run(data: BatchData, policy: Policy, cache: ModelCache | None = None, seed: int = 0):  # type: ignore[no-untyped-def]
    return replay(
        synthetic_config(), data, policy, seed, params=PARAMS, rounds=ROUNDS, models=cache
    )


def always(observation: Observation) -> bool:
    return True


def never(observation: Observation) -> bool:
    return False


def test_batch_data_keeps_labelled_rows_and_their_features(own_feature: BatchData) -> None:
    config = synthetic_config()
    assert own_feature.ids == MONTHS
    assert list(own_feature.x["2013-01"].columns) == config.features.columns
    assert len(own_feature.y["2013-01"]) == len(own_feature.times["2013-01"]) == ROWS


def test_training_rows_keep_the_newest_rows_under_the_cap(own_feature: BatchData) -> None:
    config = synthetic_config()
    split = config.split.model_copy(update={"max_train_rows": ROWS + 100})
    x, y = own_feature.training_rows(MONTHS[:3], config.model_copy(update={"split": split}))
    assert len(x) == len(y) == ROWS + 100
    # All of March and the newest 100 rows of February: none of January.
    february = own_feature.times["2013-02"].nlargest(100).index
    kept = set(own_feature.x["2013-03"]["f0"]) | set(own_feature.x["2013-02"].loc[february, "f0"])
    assert set(x["f0"]) == kept


def test_never_keeps_the_first_model(own_feature: BatchData, cache: ModelCache) -> None:
    result = run(own_feature, Policy("never"), cache)
    assert result.scored == MONTHS[3:]
    assert result.champion_version == [1] * 9
    assert result.retrained_after == result.promoted_after == result.alerted_after == []


def test_every_batch_retrains_after_each_batch_but_the_last(
    own_feature: BatchData, cache: ModelCache
) -> None:
    result = run(own_feature, Policy("every_batch"), cache)
    assert result.retrained_after == result.promoted_after == MONTHS[3:11]
    assert result.champion_version == list(range(1, 10))
    assert result.train_seconds > 0


@pytest.mark.parametrize(
    ("k", "retrained", "versions"),
    [
        (3, ["2013-06", "2013-09"], [1, 1, 1, 2, 2, 2, 3, 3, 3]),
        (2, ["2013-05", "2013-07", "2013-09", "2013-11"], [1, 1, 2, 2, 3, 3, 4, 4, 5]),
    ],
)
def test_every_k_retrains_once_every_k_batches(
    own_feature: BatchData, cache: ModelCache, k: int, retrained: list[str], versions: list[int]
) -> None:
    result = run(own_feature, Policy("every_k", k=k), cache)
    assert result.retrained_after == result.promoted_after == retrained
    assert result.champion_version == versions


@pytest.mark.parametrize("holdout_shape", [True, False])
def test_each_batch_is_scored_by_a_model_that_never_saw_it(
    own_feature: BatchData, cache: ModelCache, holdout_shape: bool
) -> None:
    """Batch m's labels follow f_m alone: a model trained on m scores it near 1, any earlier
    champion near 0.5. A replay that let the model trained on m score m would fail here."""
    config = synthetic_config()
    trained_on_it = fit_model(
        own_feature.x["2013-06"], own_feature.y["2013-06"], PARAMS, ROUNDS, config, threads=1
    )
    assert auc(own_feature.y["2013-06"], predict(trained_on_it, own_feature.x["2013-06"])) > 0.95
    for policy in (
        Policy("every_batch", holdout_shape=holdout_shape),
        Policy("configured", holdout_shape=holdout_shape, should_alert=always),
    ):
        result = run(own_feature, policy, cache)
        assert max(result.realized) < 0.7, (policy.label, result.realized)


def test_configured_without_alerts_is_never(own_feature: BatchData, cache: ModelCache) -> None:
    quiet = run(own_feature, Policy("configured", should_alert=never), cache)
    first_only = run(own_feature, Policy("never"), cache)
    assert quiet.retrained_after == quiet.alerted_after == []
    assert quiet.realized == first_only.realized


def test_the_alert_rule_sees_the_batch_just_scored(own_feature: BatchData) -> None:
    seen: list[Observation] = []

    def record(observation: Observation) -> bool:
        seen.append(observation)
        return False

    result = run(own_feature, Policy("configured", should_alert=record))
    assert [o.batch for o in seen] == MONTHS[3:11]  # December's labels come after the end
    assert [o.realized for o in seen] == result.realized[:8]
    low, high = seen[0].champion_interval
    # The first model holds out March, whose label (f2 > 0) it never saw.
    assert 0.3 < low <= seen[0].champion_holdout <= high < 0.7
    assert len(seen[0].scores) == len(seen[0].labels) == len(seen[0].features) == ROWS


def test_a_challenger_that_fails_the_decision_is_not_promoted() -> None:
    """After March the labels are noise: the default rule alerts (the realized AUC falls far
    below the holdout interval), but each challenger scores near 0.5, under the config's
    primary floor of 0.6, so `decide` keeps the champion."""
    data = batches({m: "f0" if m <= "2013-03" else None for m in MONTHS})
    result = run(data, Policy("configured"))
    assert result.alerted_after == result.retrained_after == MONTHS[3:11]
    assert result.promoted_after == []
    assert result.champion_version == [1] * 9


@pytest.mark.parametrize("holdout_shape", [True, False])
def test_a_promoted_challenger_serves_from_the_next_batch(holdout_shape: bool) -> None:
    """The rule moves from f0 to f1 in April. April's challenger (trained up to March) cannot
    know it; May's (trained on April too) can, is promoted, and serves June."""
    data = batches({m: "f0" if m <= "2013-03" else "f1" for m in MONTHS})
    result = run(data, Policy("configured", holdout_shape=holdout_shape))
    assert result.alerted_after[:2] == ["2013-04", "2013-05"]
    assert result.promoted_after[0] == "2013-05"
    june = result.scored.index("2013-06")
    assert result.champion_version[june] == 2
    assert result.realized[june] > 0.7 > max(result.realized[:2])
    assert len(result.promoted_after) <= len(result.retrained_after)


def test_shared_cache_changes_no_result(own_feature: BatchData, cache: ModelCache) -> None:
    shared = run(own_feature, Policy("every_k", k=3), cache)
    alone = run(own_feature, Policy("every_k", k=3), None)
    assert shared.realized == alone.realized
    assert shared.train_seconds > 0 and alone.train_seconds > 0


def test_summary_folds_seeds(own_feature: BatchData, cache: ModelCache) -> None:
    results = [run(own_feature, Policy("every_k", k=3), cache, seed) for seed in (0, 1, 2)]
    summary = summarize(results)
    means = [r.mean_realized for r in results]
    assert summary.seeds == [0, 1, 2]
    assert summary.seed_min == min(means) and summary.seed_max == max(means)
    low, high = summary.interval_t95
    assert low <= summary.mean_realized <= high
    assert summary.retrains == 2 and summary.alerts == 0
    assert list(summary.per_batch_realized) == MONTHS[3:]


def test_replay_needs_a_batch_to_hold_out_and_one_to_serve(own_feature: BatchData) -> None:
    with pytest.raises(ValueError, match="initial_batches"):
        replay(synthetic_config(), own_feature, Policy("never"), 0, initial_batches=12)


def observed(realized: float, holdout: float, served: tuple[float, ...]) -> Observation:
    empty = np.zeros(0)
    return Observation(
        "2013-05",
        realized,
        holdout,
        (holdout - 0.01, holdout + 0.01),
        empty,
        empty,
        pd.DataFrame(),
        2,
        served,
    )


def test_below_previous_batch_compares_with_the_batch_before() -> None:
    """Noise of a difference of two batch AUCs: sqrt(2) x 0.01 = 0.0141 below the reference,
    which is the last batch served, or the holdout before the champion served any."""
    assert not below_previous_batch(observed(0.79, 0.70, (0.80,)))
    assert below_previous_batch(observed(0.78, 0.70, (0.80,)))
    assert not below_previous_batch(observed(0.69, 0.70, ()))
    assert below_previous_batch(observed(0.68, 0.70, ()))
    # A hard holdout month no longer silences a later drop (the holdout-interval rule would).
    assert not below_holdout_interval(observed(0.74, 0.70, (0.80,)))
    assert below_previous_batch(observed(0.74, 0.70, (0.80,)))


def test_served_holds_the_champions_own_past_batches() -> None:
    """May's challenger is promoted (see above): June's observation has served nothing yet."""
    data = batches({m: "f0" if m <= "2013-03" else "f1" for m in MONTHS})
    seen: list[Observation] = []

    def record(observation: Observation) -> bool:
        seen.append(observation)
        return observation.batch == "2013-05"

    result = run(data, Policy("configured", should_alert=record))
    assert result.promoted_after == ["2013-05"]
    assert [len(o.served) for o in seen] == [0, 1, 0, 1, 2, 3, 4, 5]
    assert seen[1].served == (result.realized[0],)


def test_on_alert_replaces_promotion_settings_and_guards() -> None:
    """The May challenger the config promotes is kept out when an alert's decision asks for an
    AUC gain of 1, and when its log-loss guard tolerates no log loss at all, unless that
    decision drops the guards."""
    data = batches({m: "f0" if m <= "2013-03" else "f1" for m in MONTHS})
    strict = run(data, Policy("configured", on_alert={"min_improvement": 1.0}))
    assert strict.promoted_after == []
    assert any("roc_auc" in b for b in strict.blocked["2013-05"])
    no_loss = {"guard_tolerance": {"log_loss": -10.0}}
    guarded = run(data, Policy("configured", on_alert=no_loss))
    assert guarded.promoted_after == []
    unguarded = run(data, Policy("configured", on_alert=no_loss, guards=()))
    assert unguarded.promoted_after[0] == "2013-05"


def test_alert_confidence_sets_the_holdout_interval(own_feature: BatchData) -> None:
    seen: list[Observation] = []

    def record(observation: Observation) -> bool:
        seen.append(observation)
        return False

    widths = []
    for confidence in (0.5, 0.99):
        seen.clear()
        run(own_feature, Policy("configured", should_alert=record, alert_confidence=confidence))
        low, high = seen[0].champion_interval
        widths.append(high - low)
    assert widths[1] > 2 * widths[0] > 0


def test_the_configured_policy_follows_the_yaml() -> None:
    from tasks.watch.retrain_policies import configured_policy, policies

    config = synthetic_config()
    policy = configured_policy(config)
    assert policy.scheduled == 1 and not policy.holdout_shape  # monthly; refit on the holdout
    kept_out = config.model_copy(
        update={"split": config.split.model_copy(update={"refit_on_holdout": False})}
    )
    assert configured_policy(kept_out).holdout_shape
    assert all(not p.holdout_shape for p in policies(config).values())
    weekly = config.model_copy(
        update={"time": config.time.model_copy(update={"batch_period": "week"})}
    )
    assert configured_policy(weekly).scheduled == 4


def test_a_scheduled_retrain_is_decided_without_an_alert(own_feature: BatchData) -> None:
    result = run(own_feature, Policy("configured", scheduled=2, should_alert=never))
    assert result.alerted_after == []
    assert result.retrained_after == ["2013-05", "2013-07", "2013-09", "2013-11"]
    assert set(result.promoted_after) <= set(result.retrained_after)


def test_a_refit_champion_serves_what_the_holdout_month_taught() -> None:
    """Rules last two months: April-May follow f1, June-July f2, ... and the models train on
    the newest month's rows only. The refit champion chosen after April's labels has seen
    April, so it scores May; the champion that kept April out has not."""
    rule = {m: "f0" for m in MONTHS[:3]}
    rule |= {m: f"f{1 + (i // 2)}" for i, m in enumerate(MONTHS[3:])}
    data = batches(rule)
    config = synthetic_config()
    newest = config.model_copy(
        update={"split": config.split.model_copy(update={"max_train_rows": ROWS})}
    )

    def run_newest(policy: Policy):  # type: ignore[no-untyped-def]
        return replay(newest, data, policy, 0, params=PARAMS, rounds=ROUNDS)

    refit = run_newest(Policy("every_batch", holdout_shape=False))
    kept_out = run_newest(Policy("every_batch"))
    second_months = [refit.scored.index(m) for m in ("2013-05", "2013-07", "2013-09", "2013-11")]
    assert min(refit.realized[i] for i in second_months) > 0.8
    assert max(kept_out.realized[i] for i in second_months) < 0.7
