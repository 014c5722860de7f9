"""SHAP explanations by XGBoost itself: additivity against the model's margin, contributions
per original feature, top reasons in batch predictions and in `POST /predict?explain=true`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.data.features import model_inputs
from tasks.learn.explain import (
    contributions,
    explain_version,
    feature_groups,
    group_contributions,
    top_reasons,
)
from tasks.learn.scorer import Scorer
from tasks.learn.train import fit_model
from tasks.registry.client import CHAMPION, VersionInfo
from tasks.serve.native_scoring import encoder_categories, served_model
from tasks.serve.predict import score_frame
from tasks.serve.request import RequestSchema
from tasks.serve.serving import AliasPoller, ModelSlot

CONFIG = """
dataset: sensors
home: state
source: {kind: files, path_template: "incoming/{batch}.csv"}
time: {column: measured_at, batch_period: week, timezone: Europe/Paris}
target: {name: overheat, column: peak, expression: "peak > 80"}
features:
  numeric: [load, ambient]
  categorical: [site]
  time: [day_of_week, hour]
validation: {suite: sensors}
promotion: {slices: [site], min_slice_rows: 50}
"""


def raw_rows(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    load = rng.uniform(0, 100, rows)
    ambient = rng.normal(20, 5, rows)
    site = rng.choice(["north", "south", "east"], rows)
    peak = 0.6 * load + ambient + np.where(site == "south", 10, 0) + rng.normal(0, 8, rows)
    start = pd.Timestamp("2024-03-25", tz="UTC")
    return pd.DataFrame(
        {
            "measured_at": start + pd.to_timedelta(rng.uniform(0, 7 * 86400, rows), unit="s"),
            "load": load.round(2),
            "ambient": ambient.round(2),
            "site": site,
            "peak": peak.round(2),
        }
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PerennialConfig:
    path = tmp_path_factory.mktemp("explain") / "sensors.yaml"
    path.write_text(CONFIG)
    return load_config(path)


@pytest.fixture(scope="module")
def scorer(config: PerennialConfig) -> Scorer:
    frame = raw_rows(2000, 0)
    y = (frame["peak"] > 80).astype(int)
    params = {"max_depth": 4, "learning_rate": 0.2}
    return fit_model(model_inputs(frame, config), y, params, 30, config)


def margin(scorer: Scorer, x: pd.DataFrame) -> np.ndarray:
    return np.asarray(
        scorer.booster.inplace_predict(scorer.encoder.encode(x), predict_type="margin")
    )


@pytest.mark.parametrize("approx", [False, True])
def test_shap_values_plus_bias_sum_to_the_margin(
    config: PerennialConfig, scorer: Any, approx: bool
) -> None:
    x = model_inputs(raw_rows(300, 7), config)
    x.loc[x.index[:20], "site"] = None  # missing and unseen categories are explained too
    x.loc[x.index[20:40], "site"] = "west"
    shap = contributions(scorer, config, x, approx=approx)
    assert sorted(shap.features) == sorted(config.features.columns)  # not encoded columns
    assert shap.values.shape == (300, 5)
    np.testing.assert_allclose(shap.margin(), margin(scorer, x), rtol=0, atol=1e-4)
    # ... and the margin is the score the model gives
    scores = scorer.predict_proba(x)[:, 1]
    np.testing.assert_allclose(1 / (1 + np.exp(-shap.margin())), scores, rtol=0, atol=1e-5)


def test_encoded_columns_are_summed_per_original_feature() -> None:
    columns = ["load", "site_north", "site_south", "site_east", "hour"]
    names, index = feature_groups(columns, ["load", "hour", "site"])
    assert names == ["load", "site", "hour"] and index.tolist() == [0, 1, 1, 1, 2]
    values = np.array([[0.5, 0.25, -1.0, 0.125, 2.0], [1.0, 0.0, 0.0, 0.0, -3.0]])
    grouped = group_contributions(values, index, len(names))
    np.testing.assert_allclose(grouped, [[0.5, -0.625, 2.0], [1.0, 0.0, -3.0]])
    assert grouped.sum() == pytest.approx(values.sum())


def test_top_reasons_are_the_largest_contributions_with_their_sign() -> None:
    values = np.array([[0.1, -0.9, 0.3, 0.0], [0.0, 0.0, 0.0, 0.2]])
    reasons = top_reasons(values, ["a", "b", "c", "d"])
    assert reasons[0] == [
        {"feature": "b", "contribution": -0.9},
        {"feature": "c", "contribution": 0.3},
        {"feature": "a", "contribution": 0.1},
    ]
    assert reasons[1][0] == {"feature": "d", "contribution": 0.2}


def test_global_importance_is_mean_absolute_shap_and_drawn(
    config: PerennialConfig, scorer: Any, request: pytest.FixtureRequest
) -> None:
    x = model_inputs(raw_rows(3000, 3), config)
    explained = explain_version(scorer, config, x)
    again = explain_version(scorer, config, x)  # the same sample: the same numbers
    for each in (explained, again):  # the PNGs' temporary folders go when the test ends
        request.addfinalizer(lambda folder=each.plot.parent: shutil.rmtree(folder, True))
    assert explained.rows == 2000  # a sample of a big holdout
    assert explained.importance.index[0] == "load"  # the feature the label is built from
    pd.testing.assert_series_equal(explained.importance, again.importance)
    table = pd.read_csv(pd.io.common.StringIO(explained.table_csv()))
    assert list(table.columns) == ["feature", "mean_abs_shap"]
    assert explained.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_predictions_carry_the_top_three_reasons(
    config: PerennialConfig, scorer: Any
) -> None:
    frame = raw_rows(200, 11)
    models = {CHAMPION: ("1", scorer)}
    plain = score_frame(frame, config, models)
    assert not any(column.startswith("reason_") for column in plain.columns)
    scored = score_frame(frame, config, models, explain=True)
    shap = contributions(scorer, config, model_inputs(frame, config))
    for k in (1, 2, 3):
        assert scored[f"reason_{k}_feature"].isin(config.features.columns).all()
    first = scored["reason_1_contribution"].abs().to_numpy()
    assert (first >= scored["reason_2_contribution"].abs().to_numpy()).all()
    np.testing.assert_allclose(first, np.abs(shap.values).max(axis=1))
    np.testing.assert_allclose(scored[f"{CHAMPION}_score"], plain[f"{CHAMPION}_score"])


def test_served_reasons_match_the_batch_explanation(
    config: PerennialConfig, scorer: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from flows.serve import create_app

    monkeypatch.chdir(tmp_path)  # the live sampler's home
    model = served_model(config, scorer, CHAMPION, "1")
    schema = RequestSchema.build(config, encoder_categories(scorer))

    def lookup(_config: PerennialConfig, alias: str) -> VersionInfo | None:
        return VersionInfo("m", "1", "run", {}, {}, {}) if alias == CHAMPION else None

    poller = AliasPoller(config, ModelSlot(), lambda *_: (model, schema), lookup)
    rows = [
        {"load": 90.0, "ambient": 25.0, "site": "south", "measured_at": "2024-03-26T10:00:00Z"},
        {"load": 10.0, "ambient": None, "site": "east", "measured_at": "2024-03-27T23:00:00Z"},
    ]
    with TestClient(create_app(config, poller)) as client:
        plain = client.post("/predict", json=rows).json()["predictions"]
        assert all("reasons" not in row for row in plain)
        explained = client.post("/predict?explain=true", json=rows).json()["predictions"]
    frame = pd.DataFrame(rows)
    frame["measured_at"] = pd.to_datetime(frame["measured_at"], utc=True)
    frame["ambient"] = frame["ambient"].astype("float64")
    shap = contributions(scorer, config, model_inputs(frame, config))
    expected = top_reasons(shap.values, shap.features)
    for served, batch, row in zip(explained, expected, plain, strict=True):
        assert served["score"] == pytest.approx(row["score"])
        assert [r["feature"] for r in served["reasons"]] == [r["feature"] for r in batch]
        np.testing.assert_allclose(
            [r["contribution"] for r in served["reasons"]],
            [r["contribution"] for r in batch],
            atol=1e-5,
        )


def test_predict_explain_reaches_the_inference_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's wiring only: the flow's scoring with reasons is tested above on a real model."""
    from typer.testing import CliRunner

    from flows.cli import app, runner
    from tasks.serve.predict import AliasScore, ScoringSummary

    calls: list[dict[str, Any]] = []

    def run(_flow: Any, **parameters: Any) -> ScoringSummary:
        calls.append(parameters)
        return ScoringSummary(
            batch="2013-07",
            rows=3,
            key="predictions/flights/x/2013-07.parquet",
            explained=parameters["explain"],
            champion=AliasScore(version="2", mean_score=0.25),
        )

    monkeypatch.setattr(runner, "run", run)
    result = CliRunner().invoke(app, ["predict", "--batch", "2013-07", "--explain"])
    assert result.exit_code == 0, result.output
    assert calls[0]["explain"] is True and "top three reasons" in result.output
    assert "champion v2: mean score 0.2500" in result.output
    CliRunner().invoke(app, ["predict", "--batch", "2013-07"])
    assert calls[1]["explain"] is False


def test_the_exact_shap_sample_shrinks_with_the_cost_of_the_trees() -> None:
    import xgboost as xgb

    from tasks.learn.explain import SHAP_BUDGET, shap_cost_per_row

    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 3))
    data = xgb.DMatrix(x, (x[:, 0] > 0).astype(int))
    stumps = xgb.train({"max_depth": 1, "objective": "binary:logistic"}, data, 3)
    assert shap_cost_per_row(stumps, (0, 0)) == 3 * 2 * 2**2  # trees x leaves x depth^2
    assert shap_cost_per_row(stumps, (0, 2)) == 2 * 2 * 2**2  # only the rounds predicted with
    noisy = xgb.DMatrix(x, (x.prod(axis=1) + rng.normal(size=500) > 0).astype(int))
    deep = xgb.train({"max_depth": 6, "objective": "binary:logistic"}, noisy, 3)
    assert shap_cost_per_row(deep, (0, 0)) > shap_cost_per_row(stumps, (0, 0))
    assert SHAP_BUDGET // shap_cost_per_row(stumps, (0, 0)) > 2000
