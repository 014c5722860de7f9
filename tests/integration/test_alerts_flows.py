"""Alerts raised by the real flows (Prefect, GE, XGBoost, MLflow) on the small synthetic sensors
dataset reach every channel kind once, with their content: a real HTTP receiver for webhook,
Slack, Teams (and a webhook whose URL is a Prefect Secret block), a real SMTP server for email."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pytest_httpserver import HTTPServer

from tasks.core.batches import expand_range
from tasks.core.config import load_config
from tests.alerting import (
    SmtpSink,
    alert_channels,
    mails_about,
    posted,
    smtp_sink,  # noqa: F401  (fixture)
)
from tests.integration.test_second_dataset import CONFIG, write_week

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET_PATH = "/hooks/from-secret-block"


def write_drifting_week(folder: Path, batch: str) -> None:
    """A week whose sites are all 'south' and whose peaks follow load the other way: each input
    like the reference's (the gate passes it), the relation moved (the champion's AUC falls
    below its holdout interval, so the monitor alerts)."""
    write_week(folder, batch, seed=50)
    frame = pd.read_csv(folder / f"{batch}.csv")
    rng = np.random.default_rng(51)
    frame["site"] = "south"
    noise = rng.normal(0, 8, len(frame))
    frame["peak"] = (0.6 * (100 - frame["load"]) + frame["ambient"] + 10 + noise).round(2)
    frame.to_csv(folder / f"{batch}.csv", index=False)


def write_broken_week(folder: Path, batch: str) -> None:
    """A week whose `load` column holds text: a critical type rule fails on it."""
    write_week(folder, batch, seed=60)
    frame = pd.read_csv(folder / f"{batch}.csv")
    frame["load"] = frame["load"].astype(str)
    frame.loc[::3, "load"] = "broken"
    frame.to_csv(folder / f"{batch}.csv", index=False)


def everywhere(httpserver: HTTPServer, sink: SmtpSink, kind: str, subject: str) -> dict[str, Any]:
    """The one alert of `kind` about `subject` on each channel (fails on none or several)."""
    bodies = [json for json in posted(httpserver, "webhook") if json["kind"] == kind]
    [generic] = [b for b in bodies if b["subject"] == subject]
    [from_secret] = [
        b
        for b in (r.get_json() for r, _ in httpserver.log if r.path == SECRET_PATH)
        if b["kind"] == kind and b["subject"] == subject
    ]
    assert from_secret == generic
    [slack] = [b for b in posted(httpserver, "slack") if generic["title"] in b["text"]]
    [teams] = [
        b
        for b in posted(httpserver, "teams")
        if b["attachments"][0]["content"]["body"][0]["text"] == generic["title"]
    ]
    [mail] = mails_about(sink, generic["title"])
    assert slack and teams and mail
    return dict(generic)


def test_each_alert_kind_reaches_each_channel_once_from_the_real_flows(
    prefect_server: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    httpserver: HTTPServer,
    smtp_sink: tuple[int, SmtpSink],  # noqa: F811
) -> None:
    from prefect.blocks.system import Secret

    from flows.ingestion import ingestion
    from flows.monitoring import monitoring
    from flows.training import training
    from tasks.core.storage import Storage
    from tasks.data.ingest import land_batch
    from tasks.data.source import extract_from_source
    from tasks.data.suite import profile_landed

    port, sink = smtp_sink
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    channels = alert_channels(httpserver, port, monkeypatch)
    httpserver.expect_request(SECRET_PATH, method="POST").respond_with_data("ok")
    Secret(value=httpserver.url_for(SECRET_PATH)).save("perennial-test-alert-url", overwrite=True)
    channels.append({"kind": "webhook", "url_secret": "perennial-test-alert-url"})
    document = yaml.safe_load(CONFIG)
    document["alerts"] = {"window_minutes": 60, "channels": channels}
    (tmp_path / "sensors.yaml").write_text(yaml.safe_dump(document))
    (tmp_path / "incoming").mkdir()
    config = load_config(tmp_path / "sensors.yaml")
    weeks = expand_range("2024-W01..2024-W06", config.time)
    for seed, week in enumerate(weeks[:4]):
        write_week(tmp_path / "incoming", week, seed)
    write_broken_week(tmp_path / "incoming", weeks[4])
    write_drifting_week(tmp_path / "incoming", weeks[5])
    storage = Storage(config.home)
    for week in weeks[:2]:
        land_batch(storage, config, week, *extract_from_source(config, week))
    profile_landed(storage, config, weeks[:2])
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))

    # A promotion: the first champion.
    trained = training(batches=f"{weeks[0]}..{weeks[3]}", dataset="sensors")
    assert trained.promoted
    promoted = everywhere(httpserver, sink, "promotion", f"v{trained.version}")
    assert promoted["facts"]["by"] and promoted["facts"]["why"]  # who, and the numbers behind

    # A quarantined batch: rule, column, example.
    gated = ingestion(batch=weeks[4], dataset="sensors")
    assert gated.gate == "failed", gated
    quarantined = everywhere(httpserver, sink, "quarantine", weeks[4])
    assert quarantined["facts"]["column 1"] == "load"
    assert quarantined["facts"]["rule 1"].startswith("expect_")
    assert "/runs/flow-run/" in quarantined["link"]  # the ingestion run in the Prefect UI

    # Drift: batch, max PSI, features; a second look at the same batch alerts nobody again.
    report = monitoring(batch=weeks[5], dataset="sensors")
    assert report.status == "alert", report.reasons
    drifted = everywhere(httpserver, sink, "drift", weeks[5])
    assert drifted["facts"]["max PSI"] == round(report.max_psi, 4)
    assert "site" in drifted["facts"]["drifted features"]
    assert monitoring(batch=weeks[5], dataset="sensors").status == "alert"
    everywhere(httpserver, sink, "drift", weeks[5])  # still exactly one

    # A failed training run (a week that never arrived), from the flow's on_failure hook.
    with pytest.raises(Exception, match="2024-W30"):
        training(batches="2024-W30", dataset="sensors")
    failed = everywhere(httpserver, sink, "training_failed", "2024-W30")
    assert failed["facts"]["state"] == "Failed" and "2024-W30" in failed["facts"]["error"]
    assert "/runs/flow-run/" in failed["link"]
