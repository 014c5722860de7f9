"""Live traffic through the real parts: two versions of the synthetic weekly `sensors` model
trained by the training flow, `perennial serve`'s app (real registry, A/B share 0.5, every row
sampled) scoring a week of requests whose loads drifted, then `perennial monitor --live` on that
week (drift alert, the drift event marked live) and, once the week's labels land, `perennial
monitor` reporting each arm's row count and AUC from the scores it actually served."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.registry.client import CHALLENGER, CHAMPION, connect, version_by_alias
from tasks.watch.live import LiveSampler
from tests.integration.test_second_dataset import CONFIG, write_week
from tests.integration.test_serve import request_rows

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LIVE_CONFIG = CONFIG.replace(
    "validation: {suite: sensors, gx_root: gx, min_rows: 100}",
    "validation: {suite: sensors, gx_root: gx, min_rows: 100, key_columns: [reading_id]}\n"
    "serve: {challenger_share: 0.5, live_sample_rate: 1.0}",
)
WEEKS = ["2024-W01", "2024-W02", "2024-W03", "2024-W04", "2024-W05", "2024-W06"]
SERVED_AT = datetime(2024, 2, 7, 12, 0, tzinfo=UTC)  # within 2024-W06


def write_keyed_week(folder: Path, batch: str, seed: int) -> None:
    """A week of the synthetic dataset with a unique integer id per reading."""
    write_week(folder, batch, seed)
    path = folder / f"{batch}.csv"
    frame = pd.read_csv(path)
    frame.insert(0, "reading_id", seed * 100_000 + np.arange(len(frame)))
    frame.to_csv(path, index=False)


def drift_events(after: float) -> list[dict[str, Any]]:
    """Drift events the session's Prefect server holds, emitted after `after` (epoch s)."""
    from prefect.client.orchestration import get_client
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def read() -> list[dict[str, Any]]:
        async with get_client() as client:
            body = {"filter": {"event": {"name": ["perennial.drift.detected"]}}, "limit": 50}
            reply = await client._client.post("/events/filter", json=body)
            reply.raise_for_status()
            return list(reply.json()["events"])

    events = run_coro_as_sync(read()) or []
    return [e for e in events if pd.Timestamp(e["occurred"]).timestamp() >= after]


def test_live_traffic_feeds_drift_and_the_ab_arms(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.cli.watch import arms_lines
    from flows.serve import create_app
    from flows.training import training
    from tasks.data.ingest import land_batch
    from tasks.data.source import extract_from_source
    from tasks.data.suite import profile_landed
    from tasks.watch.arms import ArmMetrics, ArmsReport

    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))
    (tmp_path / "incoming").mkdir()
    config_path = tmp_path / "sensors.yaml"
    config_path.write_text(LIVE_CONFIG)
    config = load_config(config_path)
    for seed, batch in enumerate(WEEKS):
        write_keyed_week(tmp_path / "incoming", batch, seed)
    storage = Storage(config.home)
    for batch in WEEKS[:2]:
        land_batch(storage, config, batch, *extract_from_source(config, batch))
    profile_landed(storage, config, WEEKS[:2])
    first = training(batches="2024-W01..2024-W04", dataset="sensors")
    second = training(batches="2024-W01..2024-W05", dataset="sensors")
    champion = version_by_alias(config, CHAMPION)
    assert champion is not None
    other = next(v for v in (first.version, second.version) if v != champion.version)
    connect(config).set_registered_model_alias(config.model_name, CHALLENGER, other)

    # A week of requests, ten rows each, whose loads drifted well above the training range.
    week = pd.read_csv(tmp_path / "incoming" / "2024-W06.csv", parse_dates=["measured_at"])
    labels = dict(zip(week["reading_id"], week["peak"] > 80, strict=True))
    rows = request_rows(week.assign(load=week["load"] + 60), config)
    for row, reading in zip(rows, week["reading_id"], strict=True):
        row["reading_id"] = int(reading)
    served: list[tuple[str, str, int, float]] = []  # alias, version, reading id, score
    sampler = LiveSampler(config, storage, clock=lambda: SERVED_AT, seed=0)
    with TestClient(create_app(config, sampler=sampler)) as client:
        for start in range(0, len(rows), 10):
            chunk = rows[start : start + 10]
            body = client.post(
                "/predict", json=chunk, headers={"X-Request-Key": f"customer-{start}"}
            ).json()
            for row, prediction in zip(chunk, body["predictions"], strict=True):
                served.append(
                    (
                        prediction["alias"],
                        prediction["version"],
                        row["reading_id"],
                        prediction["score"],
                    )
                )
    assert {alias for alias, *_ in served} == {CHAMPION, CHALLENGER}

    runner = CliRunner()
    started = time.time()
    live = runner.invoke(
        app, ["monitor", "--live", "--batch", "2024-W06", "--config", str(config_path)]
    )
    assert live.exit_code == 0, live.output
    assert f"live traffic sampled by perennial serve: {len(week):,} rows" in live.output
    assert "ALERT" in live.output and "load" in live.output
    assert "event perennial.drift.detected emitted" in live.output
    deadline, events = time.monotonic() + 60, []
    while not events and time.monotonic() < deadline:
        events = [e for e in drift_events(started) if e["payload"].get("live") is True]
        time.sleep(0.5)
    assert events, "no live drift event reached the Prefect server"
    assert events[0]["payload"]["batch"] == "2024-W06"
    assert events[0]["resource"]["prefect.resource.id"] == "perennial.dataset.sensors"
    assert "load" in events[0]["payload"]["drifted_features"]

    # The labels of the week land as a normal batch: the monitor now reports the two arms.
    result = runner.invoke(
        app, ["monitor", "--batch", "2024-W06", "--config", str(config_path), "--json"]
    )
    assert result.exit_code == 0, result.output
    arms = json.loads(result.output[result.output.index("{") :])["arms"]
    assert arms["rows"] == len(week)
    for alias, version in ((CHAMPION, champion.version), (CHALLENGER, other)):
        mine = [(reading, score) for a, v, reading, score in served if a == alias]
        assert {v for a, v, *_ in served if a == alias} == {version}
        assert arms[alias]["versions"] == [version] and arms[alias]["rows"] == len(mine)
        expected = roc_auc_score([labels[r] for r, _ in mine], [s for _, s in mine])
        assert arms[alias]["metric"] == "roc_auc"
        assert arms[alias]["value"] == pytest.approx(expected, abs=1e-12)
    # The JSON reads back as the result it printed; its human lines name each arm.
    found = ArmsReport(
        arms["batch"],
        arms["live_rows"],
        arms["rows"],
        champion=ArmMetrics(**arms[CHAMPION]),
        challenger=ArmMetrics(**arms[CHALLENGER]),
    )
    human = "\n".join(arms_lines(found))
    assert f"A/B arms on {len(week):,} labelled live rows" in human
    assert f"challenger v{other}: {arms[CHALLENGER]['rows']:,} rows" in human
