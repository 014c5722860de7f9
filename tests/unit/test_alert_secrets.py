"""Which secrets an alert channel may read, and where they may go: only variables named
PERENNIAL_ALERT_* (or Prefect Secret blocks), and a password or webhook URL never over a
connection without TLS unless it stays on this machine (loopback). Checked with real receivers,
an SMTP server (aiosmtpd) and an HTTP server (pytest-httpserver), on loopback and, standing for
another host, on this machine's own non-loopback address."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_httpserver import HTTPServer

from tasks.core.config import load_config
from tasks.core.config_alerts import AlertsConfig, EmailChannel
from tasks.core.config_section import ConfigError
from tasks.notify.alerts import send_alert
from tests.alerting import (
    URL_ENV,
    mails_about,
    own_routable_address,
    running_smtp_sink,
    self_signed_certificate,
)
from tests.conftest import FLIGHTS
from tests.unit.test_alerts import configured, drift_alert

PASSWORD = "smtp-pw-XYZSECRET"
MAIL = {"sender": "perennial@example.com", "to": ["oncall@example.com"], "username": "perennial"}


def yaml_with_channel(folder: Path, channel: dict[str, Any]) -> Path:
    document = yaml.safe_load(FLIGHTS.read_text())
    document["alerts"] = {"channels": [channel]}
    path = folder / "flights.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def refusal(path: Path) -> str:
    """The one line `load_config(path)` is refused with, timed: a refusal at load connects to
    nothing, so it never waits on a host."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert time.monotonic() - started < 2.0
    message = str(refused.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.fixture
def routable() -> str:
    address = own_routable_address()
    if address is None:
        pytest.skip("this machine has no address other than loopback")
    return address


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """Every TCP connection the code under test opens (smtplib and http.client both go through
    socket.create_connection), recorded, then made."""
    made: list[tuple[str, int]] = []
    connect = socket.create_connection

    def recorded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        made.append(address)
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recorded)
    yield made


# --- which variables a channel may read ----------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        (
            {
                "kind": "email",
                "host": "smtp.example.com",
                "password_env": "MLFLOW_TRACKING_PASSWORD",
            }
            | MAIL,
            "password_env",
        ),
        ({"kind": "slack", "url_env": "PREFECT_API_AUTH_STRING"}, "url_env"),
        ({"kind": "webhook", "url_env": "PERENNIAL_SERVE_TOKEN"}, "url_env"),
        ({"kind": "webhook", "url_env": "PERENNIAL_ALERT_"}, "url_env"),  # the prefix alone
    ],
)
def test_a_variable_without_the_alert_prefix_is_refused_at_load(
    tmp_path: Path, channel: dict[str, Any], field: str
) -> None:
    message = refusal(yaml_with_channel(tmp_path, channel))
    assert f"alerts.channels.0.{channel['kind']}.{field}'" in message
    assert "PERENNIAL_ALERT_" in message and "rename the variable" in message
    assert f"{field.removesuffix('_env')}_secret" in message  # the other way to name it


def test_a_channel_built_past_the_config_still_reads_no_other_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "mlflow-admin-XYZSECRET")
    with running_smtp_sink() as (port, sink):
        # model_construct checks nothing: a channel the config's rules never saw.
        channel = EmailChannel.model_construct(
            kind="email", host="127.0.0.1", port=port, security="none", **MAIL
        )
        channel.password_env, channel.password_secret = "MLFLOW_TRACKING_PASSWORD", None
        alerts = AlertsConfig.model_construct(channels=[channel], window_minutes=60.0)
        config = configured(tmp_path, []).model_copy(update={"alerts": alerts})
        with caplog.at_level(logging.INFO):
            outcome = send_alert(config, drift_alert())
    assert outcome.failed == [f"email via 127.0.0.1:{port}"] and not outcome.sent
    assert sink.logins == [] and sink.messages == [] and sink.connections == 0
    assert "XYZSECRET" not in caplog.text


# --- a password over SMTP ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["10.255.255.1", "smtp.example.com", "127.0.0.1.example.com", "localhost.example.com", "::"],
)
def test_a_password_over_plain_smtp_to_another_host_is_refused_at_load(
    tmp_path: Path, host: str
) -> None:
    channel = {"kind": "email", "host": host, "port": 25, "security": "none"} | MAIL
    message = refusal(
        yaml_with_channel(tmp_path, channel | {"password_env": "PERENNIAL_ALERT_SMTP_PASSWORD"})
    )
    assert "field 'alerts.channels.0.email'" in message and host in message
    assert "security: none" in message and "starttls" in message and "loopback" in message


@pytest.mark.parametrize(
    "channel",
    [
        {"security": "starttls", "password_env": "PERENNIAL_ALERT_SMTP_PASSWORD"},
        {"security": "ssl", "port": 465, "password_secret": "smtp-password"},
        {"security": "none", "username": None},  # no password: the alert's text only
    ],
)
def test_tls_or_no_password_to_another_host_loads(tmp_path: Path, channel: dict[str, Any]) -> None:
    email = {"kind": "email", "host": "10.255.255.1"} | MAIL | channel
    [loaded] = load_config(yaml_with_channel(tmp_path, email)).alerts.channels
    assert isinstance(loaded, EmailChannel) and loaded.host == "10.255.255.1"


def test_a_password_over_plain_smtp_never_reaches_another_host_past_the_config(
    tmp_path: Path,
    routable: str,
    monkeypatch: pytest.MonkeyPatch,
    connections: list[tuple[str, int]],
) -> None:
    monkeypatch.setenv("PERENNIAL_ALERT_SMTP_PASSWORD", PASSWORD)
    with running_smtp_sink(routable) as (port, sink):
        connections.clear()
        channel = EmailChannel.model_construct(
            kind="email", host=routable, port=port, security="none", **MAIL
        )
        channel.password_env, channel.password_secret = "PERENNIAL_ALERT_SMTP_PASSWORD", None
        alerts = AlertsConfig.model_construct(channels=[channel], window_minutes=60.0)
        config = configured(tmp_path, []).model_copy(update={"alerts": alerts})
        outcome = send_alert(config, drift_alert())
    assert outcome.failed and not outcome.sent
    assert sink.logins == [] and sink.connections == 0 and connections == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_password_over_plain_smtp_to_loopback_is_sent(
    tmp_path: Path, host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERENNIAL_ALERT_SMTP_PASSWORD", PASSWORD)
    with running_smtp_sink() as (port, sink):
        channel = {"kind": "email", "host": host, "port": port, "security": "none"} | MAIL
        path = yaml_with_channel(
            tmp_path, channel | {"password_env": "PERENNIAL_ALERT_SMTP_PASSWORD"}
        )
        config = load_config(path).model_copy(update={"home": str(tmp_path)})
        outcome = send_alert(config, drift_alert())
    assert outcome.sent == [f"email via {host}:{port}"]
    assert sink.logins == [("perennial", PASSWORD)]
    assert len(mails_about(sink, "flights 2013-07 drifted")) == 1


# --- a webhook's URL -----------------------------------------------------------------------


def test_an_http_webhook_to_another_host_is_refused_before_a_byte_is_sent(
    tmp_path: Path,
    routable: str,
    monkeypatch: pytest.MonkeyPatch,
    connections: list[tuple[str, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = HTTPServer(host=routable, port=0)
    server.expect_request("/hooks/generic", method="POST").respond_with_data("ok")
    server.start()
    try:
        url = server.url_for("/hooks/generic?token=XYZSECRET")
        monkeypatch.setenv(URL_ENV["webhook"], url)
        config = configured(tmp_path, [{"kind": "webhook", "url_env": URL_ENV["webhook"]}])
        with caplog.at_level(logging.INFO):
            outcome = send_alert(config, drift_alert())
        received = list(server.log)
    finally:
        server.clear()
        server.stop()
    assert outcome.failed == [f"webhook ({URL_ENV['webhook']})"] and not outcome.sent
    assert received == [] and connections == []
    ours = [r.getMessage() for r in caplog.records if r.name != "werkzeug"]
    [line] = [m for m in ours if "failed" in m]
    assert "http://" in line and "https://" in line and URL_ENV["webhook"] in line
    assert not any(routable in m or "XYZSECRET" in m or "/hooks" in m for m in ours)


def test_https_to_another_host_is_sent(
    tmp_path: Path, routable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ssl

    cert, key = self_signed_certificate(routable, tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = HTTPServer(host=routable, port=0, ssl_context=context)
    server.expect_request("/hooks/generic", method="POST").respond_with_data("ok")
    server.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", cert)  # the client trusts this one certificate
        monkeypatch.setenv(URL_ENV["webhook"], server.url_for("/hooks/generic"))
        config = configured(tmp_path, [{"kind": "webhook", "url_env": URL_ENV["webhook"]}])
        outcome = send_alert(config, drift_alert())
        received = [request.get_json() for request, _ in server.log]
    finally:
        server.clear()
        server.stop()
    assert server.url_for("/").startswith(f"https://{routable}:")
    assert outcome.sent == [f"webhook ({URL_ENV['webhook']})"]
    assert [body["subject"] for body in received] == ["2013-07"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_http_to_loopback_is_sent(
    tmp_path: Path, host: str, httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/hooks/generic", method="POST").respond_with_data("ok")
    url = httpserver.url_for("/hooks/generic").replace("127.0.0.1", host)
    monkeypatch.setenv(URL_ENV["webhook"], url)
    config = configured(tmp_path, [{"kind": "webhook", "url_env": URL_ENV["webhook"]}])
    assert send_alert(config, drift_alert()).sent == [f"webhook ({URL_ENV['webhook']})"]
    assert len(httpserver.log) == 1


# --- what loopback is ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        *((h, True) for h in ("127.0.0.1", "127.9.8.7", "::1", "[::1]", "localhost", "LocalHost")),
        *(
            (h, False)
            for h in (
                "10.255.255.1",
                "0.0.0.0",
                "::",
                "128.0.0.1",
                "127.0.0.1.nip.io",
                "localhost.example.com",
                "2130706433",  # 127.0.0.1 as one number: refused rather than guessed at
                "",
                None,
            )
        ),
    ],
)
def test_loopback_is_127_0_0_0_8_ipv6_one_and_localhost(host: str | None, loopback: bool) -> None:
    from tasks.core.config_alerts import is_loopback

    assert is_loopback(host) is loopback
