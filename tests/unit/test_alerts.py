"""Alerts: the YAML names secrets and never holds them; each channel kind posts its documented
format to a real local receiver (HTTP and SMTP); one alert per (dataset, kind, subject) per
window across processes; a failing channel is logged without its secret and stops nothing."""

from __future__ import annotations

import logging
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from flows.supervision.deployments import render_deployments
from tasks.core.config import PerennialConfig, load_config
from tasks.core.config_alerts import AlertsConfig
from tasks.core.config_section import ConfigError
from tasks.core.storage import Storage
from tasks.notify.alerts import alert_swap_failed, claim, send_alert
from tasks.notify.channels import Alert
from tests.alerting import (
    URL_ENV,
    SmtpSink,
    alert_channels,
    mails_about,
    posted,
    smtp_sink,  # noqa: F401  (fixture)
)
from tests.conftest import FLIGHTS, ROOT


def configured(home: Path, channels: list[dict[str, Any]], window: float = 60) -> PerennialConfig:
    alerts = AlertsConfig.model_validate({"channels": channels, "window_minutes": window})
    return load_config(FLIGHTS).model_copy(update={"home": str(home), "alerts": alerts})


def drift_alert(batch: str = "2013-07") -> Alert:
    return Alert(
        "flights",
        "drift",
        batch,
        f"flights {batch} drifted: max PSI 0.812",
        {"batch": batch, "max PSI": 0.812, "drifted features": ["temp", "dewp"]},
        "perennial monitor --batch 2013-07",
    )


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        ({"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/XYZSECRET"}, "url"),
        ({"kind": "teams", "url_env": "https://XYZSECRET.example/flow"}, "url_env"),
        (
            {
                "kind": "email",
                **{"host": "smtp.example.com", "sender": "a@example.com", "to": ["b@x.org"]},
                **{"username": "perennial", "password": "XYZSECRET"},
            },
            "password",
        ),
    ],
)
def test_a_secret_written_in_the_yaml_is_refused_at_load(
    tmp_path: Path, channel: dict[str, Any], field: str
) -> None:
    document = yaml.safe_load(FLIGHTS.read_text())
    document["alerts"] = {"channels": [channel]}
    path = tmp_path / "flights.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert str(path) in message and "alerts.channels.0" in message and field in message
    assert "XYZSECRET" not in message  # the refusal does not repeat the secret


def test_each_channel_kind_gets_its_documented_format_once(
    tmp_path: Path,
    httpserver: HTTPServer,
    smtp_sink: tuple[int, SmtpSink],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, sink = smtp_sink
    config = configured(tmp_path, alert_channels(httpserver, port, monkeypatch))

    outcome = send_alert(config, drift_alert())

    assert len(outcome.sent) == 4 and not outcome.failed
    [generic] = posted(httpserver, "webhook")
    assert generic["kind"] == "drift" and generic["subject"] == "2013-07"
    assert generic["facts"]["drifted features"] == ["temp", "dewp"]
    assert generic["link"] == "perennial monitor --batch 2013-07"
    [slack] = posted(httpserver, "slack")
    assert slack["text"].startswith("*flights 2013-07 drifted: max PSI 0.812*")
    assert "drifted features: temp, dewp" in slack["text"]
    [teams] = posted(httpserver, "teams")
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    facts = {f["title"]: f["value"] for f in card["content"]["body"][1]["facts"]}
    assert facts["max PSI"] == "0.812"
    [mail] = mails_about(sink, "flights 2013-07 drifted")
    assert mail["To"] == "oncall@example.com"
    assert "drifted features: temp, dewp" in mail.get_payload()


def _send_from_another_process(home: str, url: str, start: Any, results: Any) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(URL_ENV["webhook"], url)
        config = configured(Path(home), [{"kind": "webhook", "url_env": URL_ENV["webhook"]}])
        start.wait()  # all five raise the alert at the same moment
        results.put(len(send_alert(config, drift_alert()).sent))


def test_five_processes_raising_one_alert_send_it_once(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/hooks/generic", method="POST").respond_with_data("ok")
    url = httpserver.url_for("/hooks/generic")
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(5), context.Queue()
    processes = [
        context.Process(
            target=_send_from_another_process, args=(str(tmp_path), url, start, results)
        )
        for _ in range(5)
    ]
    for process in processes:
        process.start()
    sent = sorted(results.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert sent == [0, 0, 0, 0, 1]
    assert len(posted(httpserver, "webhook")) == 1
    assert len(list((tmp_path / "alerts" / "flights" / "drift").glob("2013-07.*.json"))) == 1


def test_of_two_processes_claiming_together_the_second_is_told_it_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = configured(
        tmp_path, [{"kind": "webhook", "url_env": "PERENNIAL_ALERT_UNSET_IN_TESTS"}]
    )
    storage = Storage(tmp_path)
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert claim(storage, config, drift_alert(), now) is None
    # The second process listed the folder before the first one's claim landed.
    monkeypatch.setattr(storage, "list", lambda prefix: [])
    assert claim(storage, config, drift_alert(), now) == "alerts/flights/drift/2013-07.1.json"


def test_a_repeat_after_the_window_or_for_another_batch_is_sent(tmp_path: Path) -> None:
    config = configured(
        tmp_path, [{"kind": "webhook", "url_env": "PERENNIAL_ALERT_UNSET_IN_TESTS"}], window=30
    )
    storage = Storage(tmp_path)
    start = datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert claim(storage, config, drift_alert(), start) is None
    duplicate = claim(storage, config, drift_alert(), start + timedelta(minutes=29))
    assert duplicate == "alerts/flights/drift/2013-07.1.json"
    assert claim(storage, config, drift_alert("2013-08"), start) is None
    assert claim(storage, config, drift_alert(), start + timedelta(minutes=31)) is None
    assert claim(storage, config, drift_alert(), start + timedelta(minutes=32)) is not None


def test_a_failing_channel_is_logged_without_its_secret_and_the_others_still_get_it(
    tmp_path: Path,
    httpserver: HTTPServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    httpserver.expect_request("/hooks/slack", method="POST").respond_with_data("no", status=500)
    httpserver.expect_request("/hooks/generic", method="POST").respond_with_data("ok")
    monkeypatch.setenv(URL_ENV["slack"], httpserver.url_for("/hooks/slack?token=SECRET1"))
    monkeypatch.setenv(URL_ENV["teams"], "http://127.0.0.1:9/closed?token=SECRET2")
    monkeypatch.setenv(URL_ENV["webhook"], httpserver.url_for("/hooks/generic"))
    config = configured(
        tmp_path,
        [
            {"kind": "slack", "url_env": URL_ENV["slack"]},
            {"kind": "teams", "url_env": URL_ENV["teams"]},
            {"kind": "email", "host": "127.0.0.1", "port": 9, "security": "none"}
            | {"sender": "a@example.com", "to": ["b@example.com"]},
            {"kind": "webhook", "url_env": URL_ENV["webhook"]},
            {"kind": "webhook", "url_env": "PERENNIAL_ALERT_NOT_SET"},
        ],
    )
    with caplog.at_level(logging.INFO):
        outcome = send_alert(config, drift_alert())
    assert outcome.sent == [f"webhook ({URL_ENV['webhook']})"]
    assert len(outcome.failed) == 3 and outcome.skipped == ["webhook (PERENNIAL_ALERT_NOT_SET)"]
    assert len(posted(httpserver, "webhook")) == 1
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "werkzeug")
    assert "HTTP 500" in ours and "Connection refused" in ours
    assert "SECRET1" not in ours and "SECRET2" not in ours  # the receiver's own log aside


def test_a_failed_serving_swap_alerts(
    tmp_path: Path, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from tasks.serve.serving import AliasPoller, ModelSlot

    httpserver.expect_request("/hooks/generic", method="POST").respond_with_data("ok")
    monkeypatch.setenv(URL_ENV["webhook"], httpserver.url_for("/hooks/generic"))
    config = configured(tmp_path, [{"kind": "webhook", "url_env": URL_ENV["webhook"]}])

    def broken_artifact(config: PerennialConfig, alias: str, version: str) -> Any:
        raise ValueError(f"model artifact of v{version} does not match its recorded hash")

    poller = AliasPoller(
        config,
        ModelSlot(),
        loader=broken_artifact,
        lookup=lambda _config, alias: SimpleNamespace(version="7") if alias == "champion" else None,
    )
    assert poller.refresh() is False
    assert poller.refresh() is False  # polled again: the same failure is not alerted twice
    [alert] = posted(httpserver, "webhook")
    assert alert["kind"] == "swap_failed" and alert["facts"]["version"] == "7"
    assert "does not match its recorded hash" in alert["facts"]["error"]
    assert alert_swap_failed(config, "champion", "7", "again").duplicate_of


def test_the_drift_trigger_retrains_once_per_batch_within_the_window() -> None:
    rendered = yaml.safe_load(
        render_deployments((ROOT / "prefect.yaml").read_text(), ["flights"], {"flights": 30})
    )
    [training] = [d for d in rendered["deployments"] if d["entrypoint"].endswith(":training")]
    [trigger] = training["triggers"]
    assert trigger["for_each"] == ["perennial.batch"] and trigger["within"] == 1800
    assert trigger["posture"] == "Reactive" and trigger["threshold"] == 1
    production = yaml.safe_load((ROOT / "infra" / "prefect-prod.yaml").read_text())
    for deployment in production["deployments"]:
        for trigger in deployment.get("triggers", []):
            assert trigger["for_each"] == ["perennial.batch"] and trigger["within"] == 3600


def test_slack_text_from_a_ui_reason_cannot_ping_or_link() -> None:
    from tasks.notify.channels import webhook_body

    alert = Alert(
        "flights",
        "training_failed",
        "2013-07",
        "training of flights failed <!here>",
        facts={"reason": "<!channel> see <https://evil.example|the fix> & act"},
        link="http://127.0.0.1:4200/runs/flow-run/1?a=1&b=<2>",
    )
    text = webhook_body("slack", alert)["text"]
    assert "<!channel>" not in text and "<!here>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; see &lt;https://evil.example|the fix&gt; &amp; act" in text
    # Our own link still is one, with its characters escaped the way Slack reads them back.
    assert text.endswith(
        "<http://127.0.0.1:4200/runs/flow-run/1?a=1&amp;b=&lt;2&gt;|Open in Prefect>"
    )
