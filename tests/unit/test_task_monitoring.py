"""Monitoring speaks the target's metric: a regression champion is judged in RMSE (worse = above
its holdout interval), a multiclass one in macro AUC with its class shares; nothing a person
reads of them says "AUC" unless the metric is one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_dataset import TargetConfig
from tasks.core.results import jsonable
from tasks.watch.profile import ALERT, OK, build_profile, compare
from tasks.watch.report import batch_record
from tasks.watch.report_page import render_page
from tasks.watch.task_metrics import holdout_interval, realised_metrics
from tests.conftest import FLIGHTS

ROWS = 5000
BANDS = ["on_time", "late", "very_late"]


def with_target(target: TargetConfig, metric: str) -> PerennialConfig:
    return load_config(FLIGHTS).model_copy(update={"target": target, "primary_metric": metric})


@pytest.fixture
def minutes() -> PerennialConfig:
    return with_target(TargetConfig(name="minutes", column="arr_delay", task="regression"), "rmse")


@pytest.fixture
def bands() -> PerennialConfig:
    target = TargetConfig(
        name="band", column="arr_delay", task="multiclass", classes=BANDS, bins=[15, 60]
    )
    return with_target(target, "macro_auc")


def inputs(config: PerennialConfig, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numeric = [*config.features.numeric, *config.features.time]
    frame = pd.DataFrame({c: rng.normal(50, 10, ROWS) for c in numeric})
    for column in config.features.categorical:
        frame[column] = rng.choice(["a", "b", "c"], ROWS).astype(object)
    return frame


def no_auc(text: str) -> None:
    assert "AUC" not in text and "auc" not in text, text


def test_a_regression_champion_is_judged_in_rmse_above_its_holdout_interval(
    minutes: PerennialConfig,
) -> None:
    x = inputs(minutes, 1)
    predictions = x["temp"].to_numpy()
    y = predictions + np.random.default_rng(2).normal(0, 10, ROWS)
    profile = build_profile(x, y, predictions, minutes, "4", holdout_interval=(9.5, 10.5))
    assert profile["metric"] == "rmse" and profile["label"]["task"] == "regression"
    batch = inputs(minutes, 3)
    scores = batch["temp"].to_numpy()
    for noise, status, words in ((10.0, OK, "not above it"), (14.0, ALERT, "above it")):
        labels = pd.Series(scores + np.random.default_rng(4).normal(0, noise, ROWS))
        found = realised_metrics(labels, scores, minutes)
        assert set(found) == {"rmse", "mae", "label_mean", "mean_prediction", "rows"}
        report = compare(
            profile, "b", batch, scores, labels, minutes.drift, 10.0, found["rmse"], config=minutes
        )
        assert report.status == status and words in report.reasons[0], report.reasons
        assert report.reasons[0].startswith("champion RMSE ")
        assert report.label is not None and report.label.statistic == "mean"
        no_auc(json.dumps(jsonable(report)))


def test_a_multiclass_champion_is_judged_in_macro_auc_with_class_shares(
    bands: PerennialConfig,
) -> None:
    x = inputs(bands, 1)
    rng = np.random.default_rng(5)
    probabilities = rng.dirichlet([4, 2, 1], ROWS)
    y = np.array([rng.choice(3, p=p) for p in probabilities])
    profile = build_profile(x, y, probabilities, bands, "2", holdout_interval=(0.6, 0.7))
    one_a_row = build_profile(x, y, probabilities.max(axis=1), bands, "2")
    assert profile["scores"] == one_a_row["scores"]  # as the training flow passes them
    assert profile["label"]["shares"][:3] == pytest.approx(np.bincount(y) / ROWS)
    # The batch is predicted very late, with more confidence (the chosen class's probability is
    # what the prediction drift follows, as training profiles it), and mostly is.
    late = rng.dirichlet([1, 1, 12], ROWS)
    labels = pd.Series([rng.choice(3, p=p) for p in late])
    found = realised_metrics(labels, late, bands)
    assert set(found) == {"macro_auc", "multiclass_log_loss", "rows"}
    report = compare(
        profile, "b", x, late, labels, bands.drift, 0.65, found["macro_auc"], config=bands
    )
    assert report.metric == "macro_auc" and report.reasons[0].startswith("champion macro AUC")
    assert report.psi["(prediction)"] > bands.drift.psi_alert
    assert report.label is not None and report.label.statistic == "share of very_late"


def test_the_holdout_interval_is_in_the_judged_metric(minutes: PerennialConfig) -> None:
    import xgboost as xgb

    x = inputs(minutes, 6)[["temp", "wind_speed"]]
    y = 2 * x["temp"] + np.random.default_rng(7).normal(0, 5, ROWS)
    model = xgb.XGBRegressor(n_estimators=30, max_depth=3, n_jobs=1).fit(x, y)
    low, high = holdout_interval(model, x, y, minutes) or (0.0, 0.0)
    rmse = float(np.sqrt(np.mean((model.predict(x) - y) ** 2)))
    assert low < rmse < high and high - low < 0.2 * rmse


def test_the_report_page_of_a_regression_model_says_rmse(minutes: PerennialConfig) -> None:
    x = inputs(minutes, 1)
    profile = build_profile(x, x["temp"].to_numpy(), x["temp"].to_numpy(), minutes, "1")
    labels = pd.Series(x["temp"].to_numpy() + 3.0)
    report = compare(profile, "2013-05", x, x["temp"].to_numpy(), labels, minutes.drift)
    report.labelled = realised_metrics(labels, x["temp"].to_numpy(), minutes)
    record = batch_record(report)
    data = {
        "model": "flights-minutes",
        "dataset": "flights",
        "metric": "rmse",
        "generated_at": "2026-12-08T00:00:00+00:00",
        "psi_warn": 0.1,
        "psi_alert": 0.25,
        "prices_as_of": "2026-11",
        "batches": [record],
        "quarantines": [],
        "decisions": [
            {
                "version": "1",
                "decision": "promoted",
                "decided_at": "",
                "holdout": "2013-04",
                "compared_with": "none",
                "challenger_value": 44.1,
                "champion_value": None,
                "reasons": [],
            }
        ],
        "moves": [],
        "costs": [],
        "replay": None,
    }
    page = render_page(data)
    assert "<th>RMSE</th>" in page and "<th>MAE</th>" in page and "its RMSE" in page
    assert "3.0000" in page  # the RMSE of a prediction off by 3 everywhere
    text = page.split("<img")[0] + "".join(
        part.split(">", 1)[-1] for part in page.split("<img")[1:]
    )
    no_auc(text)


def test_the_pipeline_state_reads_the_judged_metric_of_any_task(
    minutes: PerennialConfig, tmp_path: Path
) -> None:
    from tasks.core.storage import Storage
    from tasks.watch.estimate import Estimate
    from tasks.watch.pipeline_state import read_pipeline_state
    from tasks.watch.report import save_batch_record

    storage = Storage(tmp_path)
    champion = lambda _config: ("3", 1.7e9)  # noqa: E731 (the registry's answer)
    empty = read_pipeline_state(minutes, storage, registry=champion)
    assert empty.champion_metric is None and empty.estimated_metric is None  # none yet
    x = inputs(minutes, 1)
    profile = build_profile(x, x["temp"].to_numpy(), x["temp"].to_numpy(), minutes, "3")
    labels = pd.Series(x["temp"].to_numpy() + 3.0)
    report = compare(profile, "2013-05", x, x["temp"].to_numpy(), labels, minutes.drift)
    report.labelled = realised_metrics(labels, x["temp"].to_numpy(), minutes)
    report.estimated = Estimate("DLE", "rmse", 2.5, 3.0, -0.5)
    report.metric = "rmse"
    save_batch_record(storage, minutes, batch_record(report))
    state = read_pipeline_state(minutes, storage, registry=champion)
    assert state.metric == "rmse"
    assert state.champion_metric == pytest.approx(3.0)
    assert state.estimated_metric == 2.5
