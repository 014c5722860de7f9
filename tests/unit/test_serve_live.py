"""`perennial serve` request limits and live-traffic sampling, on the real app (FastAPI's
TestClient) with a real fitted model and real local storage: oversized bodies and too many
rows are refused with 413 before parsing; sampled rows land in storage as live batches, in the
background and at shutdown, with their scores, version, arm, request key and received time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.core import catalog
from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.registry.client import CHALLENGER, CHAMPION
from tasks.serve.native_scoring import encoder_categories, served_model
from tasks.serve.request import RequestSchema
from tasks.serve.serving import AliasPoller, ModelSlot
from tasks.watch.live import (
    ARM,
    RECEIVED_AT,
    REQUEST_KEY,
    SCORE,
    VERSION,
    LiveSampler,
    live_batches_within,
    read_live,
)
from tests.unit.test_serving import CONFIG, Registry, fitted

LIVE_CONFIG = CONFIG.replace(
    "validation: {suite: sensors}", "validation: {suite: sensors, key_columns: [reading_id]}"
).replace(
    "serve: {challenger_share: 0.2, poll_seconds: 0.1}",
    "serve: {challenger_share: 0.5, poll_seconds: 60, max_rows: 5, max_body_kb: 4,"
    " live_sample_rate: 1.0, live_flush_rows: 1000, live_flush_seconds: 3600}",
)
ROW = {"load": 80.0, "ambient": 25.0, "site": "south", "measured_at": "2024-01-01T10:00:00Z"}
RECEIVED = datetime(2024, 3, 27, 9, 30, tzinfo=UTC)  # Paris time: week 2024-W13


def make_config(tmp_path: Path, text: str = LIVE_CONFIG) -> PerennialConfig:
    path = tmp_path / "sensors.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.fixture
def config(tmp_path: Path) -> PerennialConfig:
    return make_config(tmp_path)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    config = make_config(tmp_path_factory.mktemp("models"))
    return {"1": fitted(config, 0), "2": fitted(config, 1)}


def client_for(
    config: PerennialConfig, models: dict[str, Any], sampler: LiveSampler | None = None
) -> Any:
    """The real app over two fitted versions (champion 1, challenger 2), without a registry."""
    from fastapi.testclient import TestClient

    from flows.serve import create_app

    registry = Registry()
    registry.aliases = {CHAMPION: "1", CHALLENGER: "2"}
    schema = RequestSchema.build(config, encoder_categories(models["1"]))

    def load(_config: PerennialConfig, alias: str, version: str) -> Any:
        return served_model(config, models[version], alias, version), schema

    poller = AliasPoller(config, ModelSlot(), load, registry.lookup)
    return TestClient(create_app(config, poller, sampler))


def test_bodies_over_the_byte_limit_are_refused_before_parsing(
    config: PerennialConfig, models: dict[str, Any]
) -> None:
    with client_for(config, models) as client:
        # Not even JSON: a 413 (not a 422) proves the body was never parsed.
        garbage = b"[" + b"x" * (4 * 1024)
        refused = client.post("/predict", content=garbage)
        assert refused.status_code == 413
        assert "serve.max_body_kb" in refused.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
            for _ in range(10):
                yield b" " * 1024

        streamed = client.post("/predict", content=chunks())
        assert streamed.status_code == 413 and "4 KiB" in streamed.json()["detail"]
        assert client.post("/predict", json=ROW).status_code == 200  # small bodies still pass
        metrics = client.get("/metrics").text
        counted = 'perennial_serve_requests_total{alias="none",protocol="predict",status="413"}'
        assert f"{counted} 2.0" in metrics


def test_more_rows_than_the_limit_are_refused_with_413(
    config: PerennialConfig, models: dict[str, Any]
) -> None:
    with client_for(config, models) as client:
        assert client.post("/predict", json=[ROW] * 5).status_code == 200
        refused = client.post("/predict", json=[ROW] * 6)
        assert refused.status_code == 413
        assert "more than 5 rows (serve.max_rows)" in refused.json()["detail"]


def test_sampled_rows_are_written_at_shutdown_with_scores_and_arms(
    config: PerennialConfig, models: dict[str, Any]
) -> None:
    storage = Storage(config.home)
    sampler = LiveSampler(config, storage, clock=lambda: RECEIVED, seed=1)
    served: dict[tuple[str, int], tuple[float, str, str]] = {}
    with client_for(config, models, sampler) as client:
        for i in range(40):
            rows = [{**ROW, "load": float(i), "reading_id": i * 10 + j} for j in range(2)]
            body = client.post("/predict", json=rows, headers={"X-Request-Key": f"k{i}"}).json()
            for j, prediction in enumerate(body["predictions"]):
                served[(f"k{i}", i * 10 + j)] = (
                    prediction["score"],
                    prediction["version"],
                    prediction["alias"],
                )
        assert sampler.written == []  # nothing written on the request path
    # The clean stop wrote everything that was buffered.
    assert [key.rsplit("/", 1)[0] for key in sampler.written] == [
        "live/sensors/sensors-overheat/2024-W13"
    ]
    frame = read_live(storage, config, "2024-W13")
    assert len(frame) == 80
    for row in frame.itertuples(index=False):
        record = row._asdict()
        key = (record[REQUEST_KEY], int(record["reading_id"]))
        assert served[key] == (record[SCORE], record[VERSION], record[ARM])
    assert set(frame[ARM]) == {CHAMPION, CHALLENGER}  # both arms are recorded
    assert (frame[RECEIVED_AT] == pd.Timestamp(RECEIVED)).all()
    assert frame["measured_at"].iloc[0] == pd.Timestamp("2024-01-01T10:00:00Z")


def test_rows_are_written_in_the_background_once_enough_are_waiting(
    tmp_path: Path, models: dict[str, Any]
) -> None:
    config = make_config(
        tmp_path,
        LIVE_CONFIG.replace("live_flush_rows: 1000", "live_flush_rows: 10").replace(
            "live_sample_rate: 1.0", "live_sample_rate: 0.5"
        ),
    )
    storage = Storage(config.home)
    sampler = LiveSampler(config, storage, clock=lambda: RECEIVED, seed=7)
    folder = catalog.key("live_folder", config, batch="2024-W13")
    with client_for(config, models, sampler) as client:
        for i in range(100):
            assert client.post("/predict", json={**ROW, "load": float(i)}).status_code == 200
        deadline = time.monotonic() + 30
        while not storage.list(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert storage.list(folder), "no part written while serving"
    sampled = read_live(storage, config, "2024-W13")
    assert 30 <= len(sampled) <= 70  # about half of 100 rows at rate 0.5
    assert sorted(sampled["load"]) == sorted(set(sampled["load"]))  # none written twice


def test_no_sampling_by_default(tmp_path: Path, models: dict[str, Any]) -> None:
    config = make_config(tmp_path, LIVE_CONFIG.replace("live_sample_rate: 1.0", "max_rows: 5"))
    storage = Storage(config.home)
    with client_for(config, models) as client:
        assert client.post("/predict", json=ROW).status_code == 200
    assert not (Path(config.home) / "live").exists()
    assert read_live(storage, config, "2024-W13").empty


def test_a_failed_write_keeps_the_rows_for_the_next_flush(
    config: PerennialConfig, models: dict[str, Any]
) -> None:
    class Flaky(Storage):
        fail = True

        def write_bytes(self, key: str, data: bytes, *, immutable: bool = False) -> None:
            if self.fail:
                raise OSError("disk full")
            super().write_bytes(key, data, immutable=immutable)

    storage = Flaky(config.home)
    sampler = LiveSampler(config, storage, clock=lambda: RECEIVED)
    model = served_model(config, models["1"], CHAMPION, "1")
    schema = RequestSchema.build(config, encoder_categories(models["1"]))
    rows = [schema.row.model_validate({**ROW, "reading_id": i}, strict=False) for i in range(3)]
    assert sampler.offer(rows, np.array([0.1, 0.2, 0.3]), model, None) == 3
    assert sampler.flush() == []
    storage.fail = False
    assert len(sampler.flush()) == 1
    assert read_live(storage, config, "2024-W13")[SCORE].tolist() == [0.1, 0.2, 0.3]


def test_live_periods_default_to_the_dataset_period_and_can_be_finer(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert live_batches_within(config, "2024-W13") == ["2024-W13"]
    daily = make_config(
        tmp_path, LIVE_CONFIG.replace("max_rows: 5", "max_rows: 5, live_period: day")
    )
    assert live_batches_within(daily, "2024-W13") == [f"2024-03-{d}" for d in range(25, 32)]
    sampler = LiveSampler(daily, Storage(daily.home), clock=lambda: RECEIVED)
    assert sampler.periods.batch_period == "day"
