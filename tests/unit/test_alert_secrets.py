"""Which secrets an alert channel may read: only variables named PERENNIAL_ALERT_* (or Prefect
Secret blocks). Checked with a real receiver, an SMTP server (aiosmtpd)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.core.config import load_config
from tasks.core.config_alerts import AlertsConfig, EmailChannel
from tasks.core.config_section import ConfigError
from tasks.notify.alerts import send_alert
from tests.alerting import running_smtp_sink
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
