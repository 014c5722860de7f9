"""Serving without a registry: a real fitted model (encoder state + XGBoost booster), its native
fast path, the request schema, A/B routing, the alias poller's swaps, and the HTTP app on a
TestClient."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from tasks.core.config import PerennialConfig, load_config
from tasks.data.features import model_inputs
from tasks.learn.train import fit_model
from tasks.registry.client import CHALLENGER, CHAMPION, VersionInfo
from tasks.registry.metrics import predict
from tasks.serve.native_scoring import (
    ServedModel,
    WarmUpError,
    encoder_categories,
    served_model,
    warm_up,
)
from tasks.serve.request import RequestSchema
from tasks.serve.serving import AliasPoller, Arms, ModelSlot, key_fraction, route

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
serve: {challenger_share: 0.2, poll_seconds: 0.1}
"""


def raw_rows(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    load = rng.uniform(0, 100, rows)
    ambient = rng.normal(20, 5, rows)
    site = rng.choice(["north", "south", "east"], rows)
    peak = 0.6 * load + ambient + np.where(site == "south", 10, 0) + rng.normal(0, 8, rows)
    start = pd.Timestamp("2024-03-25", tz="UTC")  # across the Paris DST change
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
    path = tmp_path_factory.mktemp("serving") / "sensors.yaml"
    path.write_text(CONFIG)
    return load_config(path)


def fitted(config: PerennialConfig, seed: int) -> Any:
    frame = raw_rows(2000, seed)
    y = (frame["peak"] > 80).astype(int)
    params = {"max_depth": 4, "learning_rate": 0.2}
    return fit_model(model_inputs(frame, config), y, params, 30, config)


@pytest.fixture(scope="module")
def scorer(config: PerennialConfig) -> Any:
    return fitted(config, 0)


@pytest.fixture(scope="module")
def schema(config: PerennialConfig, scorer: Any) -> RequestSchema:
    return RequestSchema.build(config, encoder_categories(scorer))


def as_json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.drop(columns=["peak"]).astype(object).where(frame.notna(), None)
    records = out.to_dict(orient="records")
    for record in records:
        record["measured_at"] = record["measured_at"].isoformat()
    return records


def test_native_scores_equal_pipeline_scores(
    config: PerennialConfig, scorer: Any, schema: RequestSchema
) -> None:
    frame = raw_rows(500, 7)
    frame.loc[::7, "site"] = "west"  # a site the model never saw
    frame.loc[::11, "site"] = None
    frame.loc[::13, "load"] = np.nan
    model = served_model(config, scorer, CHAMPION, "1")
    import orjson

    rows = schema.parse(orjson.dumps(as_json_rows(frame)))
    native = model.score(rows)
    batch = predict(scorer, model_inputs(frame, config))
    assert np.array_equal(native, batch)


def test_warm_up_refuses_a_fast_path_that_disagrees(
    config: PerennialConfig, scorer: Any, schema: RequestSchema
) -> None:
    model = served_model(config, scorer, CHAMPION, "1")
    warm_up(config, scorer, model, schema)  # agrees: no error
    shifted = dict(model.codes)
    shifted["site"] = {value: code + 1 for value, code in model.codes["site"].items()}
    broken = ServedModel(**{**model.__dict__, "codes": shifted})
    with pytest.raises(WarmUpError, match="differ from the batch scores"):
        warm_up(config, scorer, broken, schema)


def field_errors(schema: RequestSchema, body: bytes) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        schema.parse(body)
    return [error["loc"] for error in caught.value.errors()]


def test_schema_names_missing_mistyped_and_unknown_fields(schema: RequestSchema) -> None:
    good = b'{"load": 1, "ambient": 2.5, "site": "north", "measured_at": "2024-01-01T10:00:00Z"}'
    assert len(schema.parse(good)) == 1
    assert len(schema.parse(b"[" + good + b"," + good + b"]")) == 2
    missing = b'{"load": 1, "site": "north", "measured_at": "2024-01-01T10:00:00Z"}'
    assert field_errors(schema, missing) == [("ambient",)]
    mistyped = good.replace(b'"load": 1', b'"load": "1"')
    assert field_errors(schema, mistyped) == [("load",)]
    assert field_errors(schema, good.replace(b'"north"', b"3")) == [("site",)]
    unknown = good.replace(b"{", b'{"peak": 90, ', 1)
    assert field_errors(schema, unknown) == [("peak",)]
    assert field_errors(schema, b"[" + good + b"," + missing + b"]") == [(1, "ambient")]
    assert field_errors(schema, b"[]")  # at least one row


def served(version: str, alias: str = CHAMPION) -> ServedModel:
    return ServedModel(alias, version, None, (0, 0), (), {}, "t", frozenset(), None)  # type: ignore[arg-type]


def test_routing_share_and_stickiness() -> None:
    arms = Arms(served("1"), served("2", CHALLENGER))
    keys = [f"customer-{i}" for i in range(5000)]
    picks = [route(arms, 0.2, key).alias for key in keys]  # type: ignore[union-attr]
    assert 0.17 <= picks.count(CHALLENGER) / 5000 <= 0.23
    assert all(route(arms, 0.2, keys[i]).alias == picks[i] for i in range(200))  # type: ignore[union-attr]
    unkeyed = [route(arms, 0.2, None).alias for _ in range(5000)]  # type: ignore[union-attr]
    assert 0.17 <= unkeyed.count(CHALLENGER) / 5000 <= 0.23
    assert all(route(arms, 0.0, key) is arms.champion for key in [*keys, None])
    assert all(route(arms, 1.0, key) is arms.challenger for key in [*keys, None])
    alone = Arms(served("1"))  # no challenger: the champion takes every request, whatever the share
    assert all(route(alone, 1.0, key) is alone.champion for key in [*keys, None])
    assert 0 <= key_fraction("anything") < 1


class Registry:
    """Aliases a test moves by hand, and a loader that refuses chosen versions."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}
        self.broken: set[str] = set()
        self.loads: list[str] = []

    def lookup(self, _config: PerennialConfig, alias: str) -> VersionInfo | None:
        version = self.aliases.get(alias)
        return None if version is None else VersionInfo("m", version, "run", {}, {}, {})

    def load(self, _config: PerennialConfig, alias: str, version: str) -> Any:
        self.loads.append(version)
        if version in self.broken:
            raise RuntimeError("artifact sha256 mismatch")
        return served(version, alias), RequestSchema(None, None, None)  # type: ignore[arg-type]


def test_poller_swaps_moved_aliases_and_keeps_serving_on_failure(
    config: PerennialConfig, caplog: pytest.LogCaptureFixture
) -> None:
    registry, slot = Registry(), ModelSlot()
    failures: list[tuple[str, str]] = []
    poller = AliasPoller(
        config, slot, registry.load, registry.lookup, on_failure=lambda *a: failures.append(a)
    )
    assert not poller.refresh() and slot.arms.champion is None
    registry.aliases[CHAMPION] = "1"
    assert poller.refresh() and slot.arms.champion.version == "1"  # type: ignore[union-attr]
    assert not poller.refresh() and registry.loads == ["1"]  # unchanged: not loaded again

    registry.aliases[CHALLENGER] = "2"
    assert poller.refresh() and slot.arms.challenger.version == "2"  # type: ignore[union-attr]

    registry.aliases[CHAMPION] = "3"
    registry.broken.add("3")
    before = slot.arms
    with caplog.at_level(logging.ERROR, logger="perennial.serve"):
        assert not poller.refresh()
    assert slot.arms is before and failures == [(CHAMPION, "3")]
    assert "v3" in caplog.text and "not swapped in" in caplog.text

    registry.aliases = {CHAMPION: "2"}  # the challenger was promoted: its alias is gone
    assert poller.refresh()
    assert slot.arms.champion.version == "2" and slot.arms.challenger is None  # type: ignore[union-attr]


def test_app_scores_refuses_and_reports(
    config: PerennialConfig, scorer: Any, schema: RequestSchema, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from flows.serve import create_app

    champion = served_model(config, scorer, CHAMPION, "1")
    challenger = served_model(config, fitted(config, 1), CHALLENGER, "2")
    registry = Registry()
    registry.aliases = {CHAMPION: "1", CHALLENGER: "2"}
    models = {"1": champion, "2": challenger}

    def load(_config: PerennialConfig, _alias: str, version: str) -> Any:
        return models[version], schema

    poller = AliasPoller(config, ModelSlot(), load, registry.lookup)
    row = {"load": 80.0, "ambient": 25.0, "site": "south", "measured_at": "2024-01-01T10:00:00Z"}
    with TestClient(create_app(config, poller)) as client:
        assert client.get("/health").json()["champion"] == "1"
        assert client.get("/version").json() == {
            "model": "sensors-overheat",
            CHAMPION: "1",
            CHALLENGER: "2",
            "challenger_share": 0.2,
        }
        one = client.post("/predict", json=row).json()
        assert one["predictions"][0]["version"] == one["version"]
        assert one["predictions"][0]["label"] == int(one["predictions"][0]["score"] >= 0.5)
        many = client.post("/predict", json=[row, row], headers={"X-Request-Key": "k"}).json()
        assert len(many["predictions"]) == 2

        refused = client.post("/predict", json={k: v for k, v in row.items() if k != "load"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "load"
        refused = client.post("/predict", json={**row, "ambient": "warm"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "ambient"
        refused = client.post("/predict", json={**row, "operator": "x"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "operator"

        arms = [
            client.post("/predict", json=row, headers={"X-Request-Key": f"user-{i}"}).json()[
                "alias"
            ]
            for i in range(1000)
        ]
        assert 0.15 <= arms.count(CHALLENGER) / 1000 <= 0.25
        text = client.get("/metrics").text
        assert 'perennial_serve_model_version{alias="champion"} 1.0' in text
        counted = 'perennial_serve_requests_total{alias="none",protocol="predict",status="422"}'
        assert f"{counted} 3.0" in text
        assert "perennial_serve_request_seconds_bucket" in text


def test_serve_settings_do_not_change_the_training_key(tmp_path: Path) -> None:
    from tasks.core.config_section import ConfigError

    path = tmp_path / "sensors.yaml"  # one path: the source template is resolved against it
    path.write_text(CONFIG.replace("serve:", "# serve:"))
    plain = load_config(path)
    path.write_text(CONFIG)
    tuned = load_config(path)
    assert plain.serve.challenger_share == 0.0 and tuned.serve.challenger_share == 0.2
    assert plain.fingerprint() == tuned.fingerprint()
    changed = CONFIG.replace("time: [day_of_week, hour]", "time: [hour]")
    path.write_text(changed)
    assert load_config(path).fingerprint() != plain.fingerprint()  # the check can fail
    path.write_text(CONFIG.replace("challenger_share: 0.2", "challenger_share: 1.5"))
    with pytest.raises(ConfigError, match="challenger_share"):
        load_config(path)


def test_serve_command_is_listed_with_loopback_default() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0 and "127.0.0.1" in result.output and "--port" in result.output
