"""The served model is the judged recipe refit on its holdout too (tasks/train.serve_model), and
the registry says which batches it saw (tasks/lineage)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.data.features import Datasets, TimeSplit
from tasks.learn.train import refit_rounds, serve_model
from tasks.learn.tune import TuneResult
from tasks.registry.lineage import JUDGED_ON_TAG, TRAINED_ON_TAG, batches_seen, judged_on
from tasks.registry.metrics import auc, predict
from tests.unit.test_replay import FEATURES, month_frame, synthetic_config

PARAMS = {"max_depth": 3, "learning_rate": 0.3}


def part(month: str, informative: str) -> tuple[pd.DataFrame, pd.Series]:
    from tasks.data.features import features_and_label

    x, y = features_and_label(month_frame(month, informative, seed=int(month[-2:])), config())
    return x.reset_index(drop=True), y.reset_index(drop=True)


def config(refit: bool = True):  # type: ignore[no-untyped-def]
    base = synthetic_config()
    return base.model_copy(
        update={"split": base.split.model_copy(update={"refit_on_holdout": refit})}
    )


@pytest.fixture(scope="module")
def data() -> Datasets:
    """January and February follow f0; March, the holdout, follows f1: only a model that saw
    March can score it."""
    split = TimeSplit(train=["2013-01"], validation="2013-02", holdout="2013-03")
    return Datasets(split, *part("2013-01", "f0"), *part("2013-02", "f0"), *part("2013-03", "f1"))


def tuned(rounds: int = 20) -> TuneResult:
    return TuneResult("study", PARAMS, 0.8, 0, rounds, 1, 1, 0)


def test_the_refit_has_seen_the_holdout_and_says_so(data: Datasets) -> None:
    from tasks.learn.train import fit_model

    judged = fit_model(data.x_fit, data.y_fit, PARAMS, 20, config())
    served = serve_model(judged, data, config(), tuned())
    assert served.refit and served.judged_on == "2013-03"
    assert served.trained_on == ["2013-01", "2013-02", "2013-03"]
    assert served.rows == len(data.y_fit) + len(data.y_holdout)
    assert served.rounds == 30  # 20 rounds for two batches' rows, scaled to three
    # The judged model never saw March's rule; the refit did.
    assert auc(data.y_holdout, predict(judged, data.x_holdout)) < 0.65
    assert auc(data.y_holdout, predict(served.model, data.x_holdout)) > 0.8


def test_without_refit_the_judged_model_is_served(data: Datasets) -> None:
    judged = object()
    served = serve_model(judged, data, config(refit=False), tuned())
    assert served.model is judged and not served.refit
    assert served.trained_on == ["2013-01", "2013-02"] and served.judged_on == "2013-03"
    assert served.rounds == 20 and served.rows == len(data.y_fit)


def test_refit_rounds_scale_with_the_rows_and_never_shrink() -> None:
    assert refit_rounds(100, 1000, 1500) == 150
    assert refit_rounds(100, 1000, 1000) == 100
    assert refit_rounds(100, 1000, 900) == 100


def test_batches_seen_reads_the_tags_of_refits_and_of_older_versions() -> None:
    refit = {TRAINED_ON_TAG: "2013-01,2013-02,2013-03", JUDGED_ON_TAG: "2013-03"}
    assert batches_seen(refit) == ["2013-01", "2013-02", "2013-03"]
    assert judged_on(refit) == "2013-03"
    older = {"perennial.batches": "2013-01,2013-02,2013-03"}  # registered before refits
    assert batches_seen(older) == ["2013-01", "2013-02"] and judged_on(older) == "2013-03"
    assert batches_seen({}) == []


def test_features_are_the_synthetic_ones(data: Datasets) -> None:
    assert list(data.x_holdout.columns) == synthetic_config().features.columns
    assert set(FEATURES) <= set(data.x_holdout.columns)
    assert np.isin(data.y_holdout.unique(), [0, 1]).all()
