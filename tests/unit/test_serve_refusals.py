"""What `perennial serve` refuses, and what it counts: non-finite numbers and times outside the
range every scoring path holds get a 422 naming the field (never a 500, with `?explain=true`
too); every error status is counted in /metrics; the API docs are off unless asked for and
behind the token; and a bind beyond loopback without a token is refused at start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.registry.client import CHAMPION
from tasks.serve.native_scoring import ServedModel, encoder_categories, served_model
from tasks.serve.request import RequestSchema
from tasks.serve.serving import AliasPoller, ModelSlot
from tasks.watch.live import LiveSampler, finite_row
from tests.unit.test_serving import CONFIG, Registry, fitted

ROW = {"load": 80.0, "ambient": 25.0, "site": "south", "measured_at": "2024-01-01T10:00:00Z"}
KEYED_CONFIG = CONFIG.replace(
    "validation: {suite: sensors}", "validation: {suite: sensors, key_columns: [reading_id]}"
)
TOKEN = "t0ken-for-tests"


def make_config(tmp_path: Path, text: str = KEYED_CONFIG) -> PerennialConfig:
    path = tmp_path / "sensors.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return fitted(make_config(tmp_path_factory.mktemp("refusals")), 0)


def client_for(config: PerennialConfig, scorer: Any, model: ServedModel | None = None) -> Any:
    """The real app over one champion (v1), without a registry."""
    from fastapi.testclient import TestClient

    from flows.serve import create_app

    registry = Registry()
    registry.aliases = {CHAMPION: "1"}
    schema = RequestSchema.build(config, encoder_categories(scorer))
    champion = model or served_model(config, scorer, CHAMPION, "1")

    def load(_config: PerennialConfig, _alias: str, _version: str) -> Any:
        return champion, schema

    poller = AliasPoller(config, ModelSlot(), load, registry.lookup)
    sampler = LiveSampler(config, Storage(config.home))
    return TestClient(create_app(config, poller, sampler), raise_server_exceptions=False)


def body_with(field: str, literal: str) -> bytes:
    """A JSON row whose `field` is the raw JSON text `literal` (NaN and Infinity are not JSON,
    but parsers accept them, and 1e400 is JSON that parses to infinity)."""
    text = orjson.dumps({**ROW, field: "PLACEHOLDER"}).decode()
    return text.replace('"PLACEHOLDER"', literal).encode()


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e300"]
OUT_OF_RANGE_TIMES = [
    '"9999-12-31T23:59:59Z"',  # the zone's offset (Paris) would pass year 9999
    '"9999-12-31T23:59:59"',
    '"0001-01-01T00:00:00+14:00"',
    '"1500-01-01T00:00:00Z"',  # beyond the pandas timestamps batch scoring uses
    '"2300-01-01T00:00:00Z"',
]


@pytest.mark.parametrize("explain", ["", "?explain=true"])
def test_non_finite_numbers_and_out_of_range_times_get_422_naming_the_field(
    tmp_path: Path, scorer: Any, explain: str
) -> None:
    config = make_config(tmp_path)
    cases = [("load", literal) for literal in NON_FINITE]
    cases += [("reading_id", literal) for literal in NON_FINITE[:4]]
    cases += [("measured_at", literal) for literal in OUT_OF_RANGE_TIMES]
    with client_for(config, scorer) as client:
        for field, literal in cases:
            answer = client.post(f"/predict{explain}", content=body_with(field, literal))
            assert answer.status_code == 422, (field, literal, answer.text)
            assert [item["field"] for item in answer.json()["detail"]] == [field]
        # The edges of the range still score, and explain.
        for stamp in ('"1677-09-22T00:00:00Z"', '"2262-04-09T23:00:00"'):
            answer = client.post(f"/predict{explain}", content=body_with("measured_at", stamp))
            assert answer.status_code == 200, (stamp, answer.text)
        largest = "3.4e38"  # inside float32, which the booster reads
        assert client.post(f"/predict{explain}", content=body_with("load", largest)).is_success
        text = client.get("/metrics").text
    refused = len(cases)
    counted = 'perennial_serve_requests_total{alias="none",protocol="predict",status="422"}'
    assert f"{counted} {refused}.0" in text
    assert 'status="500"' not in text


class ExplodingBooster:
    def inplace_predict(self, *_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("booster crashed")


def test_every_error_status_is_counted_500s_included(
    tmp_path: Path, scorer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path)
    good = served_model(config, scorer, CHAMPION, "1")
    broken = ServedModel(**{**good.__dict__, "booster": ExplodingBooster()})
    with client_for(config, scorer, broken) as client:
        failed = client.post("/predict", json=ROW)
        assert failed.status_code == 500 and "v1 failed to score" in failed.json()["detail"]
        assert client.get("/no-such-route").status_code == 404
        assert client.post("/predict", json={**ROW, "load": "x"}).status_code == 422
        text = client.get("/metrics").text
    counted = 'perennial_serve_requests_total{alias="champion",protocol="predict",status="500"}'
    assert f"{counted} 1.0" in text
    assert 'perennial_serve_error_responses_total{route="/predict",status="500"} 1.0' in text
    assert 'perennial_serve_error_responses_total{route="/predict",status="422"} 1.0' in text
    assert 'perennial_serve_error_responses_total{route="other",status="404"} 1.0' in text

    monkeypatch.setenv("PERENNIAL_SERVE_TOKEN", TOKEN)
    with client_for(config, scorer) as client:
        assert client.get("/metrics").status_code == 401
        text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert 'perennial_serve_error_responses_total{route="/metrics",status="401"} 1.0' in text


def test_an_unhandled_exception_is_counted_as_a_500() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from flows.serve import ErrorCounter, ServeMetrics

    app, metrics = FastAPI(), ServeMetrics()

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("unexpected")

    app.add_middleware(ErrorCounter, metrics=metrics)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
    assert metrics.errors.labels("/boom", "500")._value.get() == 1


def test_api_docs_are_off_unless_asked_for_and_then_need_the_token(
    tmp_path: Path, scorer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = make_config(tmp_path)
    with client_for(config, scorer) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 404, path

    with_docs = make_config(tmp_path, KEYED_CONFIG.replace("serve: {", "serve: {docs: true, "))
    with client_for(with_docs, scorer) as client:
        assert client.get("/openapi.json").json()["paths"]["/predict"]
        assert client.get("/docs").status_code == 200
    monkeypatch.setenv("PERENNIAL_SERVE_TOKEN", TOKEN)
    with client_for(with_docs, scorer) as client:
        for path in ("/docs", "/openapi.json"):
            assert client.get(path).status_code == 401, path
            authorised = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert authorised.status_code == 200, path


def test_a_bind_beyond_loopback_without_a_token_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from flows import serve
    from flows.cli import app

    for host in ("127.0.0.1", "::1", "localhost"):
        serve.refuse_open_bind(host, None)  # loopback needs no token
    serve.refuse_open_bind("0.0.0.0", TOKEN)

    started: list[str] = []
    monkeypatch.setattr("uvicorn.run", lambda *args, **kwargs: started.append("uvicorn"))
    monkeypatch.delenv("PERENNIAL_SERVE_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"])
    assert result.exit_code == 1 and started == []
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "0.0.0.0" in lines[0] and "PERENNIAL_SERVE_TOKEN" in lines[0]
    assert "--host 127.0.0.1" in lines[0]


def test_rows_with_non_finite_numbers_or_scores_are_not_sampled(
    tmp_path: Path, scorer: Any
) -> None:
    config = make_config(
        tmp_path, KEYED_CONFIG.replace("serve: {", "serve: {live_sample_rate: 1, ")
    )
    schema = RequestSchema.build(config, encoder_categories(scorer))
    model = served_model(config, scorer, CHAMPION, "1")
    finite = schema.row.model_validate(ROW, strict=False)
    # Rows the schema would refuse, built past it: the sampler must not trust its callers.
    not_a_number = finite.model_copy(update={"load": float("nan")})
    infinite_key = finite.model_copy(update={"reading_id": float("inf")})
    assert finite_row(finite, 0.5) and not finite_row(finite, float("nan"))
    sampler = LiveSampler(config, Storage(config.home))
    rows = [finite, not_a_number, infinite_key, finite]
    scores = np.array([0.1, 0.2, 0.3, float("inf")])
    assert sampler.offer(rows, scores, model, None) == 1


@pytest.fixture(autouse=True)
def _no_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests start without a token, whatever the environment that runs them holds."""
    monkeypatch.delenv("PERENNIAL_SERVE_TOKEN", raising=False)
    yield
