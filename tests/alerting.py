"""Real receivers for alert tests: an HTTP server (pytest-httpserver) for the webhook, Slack and
Teams channels, and an SMTP server (aiosmtpd) for email. Secrets reach the code through the
environment, as in production."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

WEBHOOK_PATHS = {"webhook": "/hooks/generic", "slack": "/hooks/slack", "teams": "/hooks/teams"}
URL_ENV = {
    "webhook": "TEST_ALERT_WEBHOOK_URL",
    "slack": "TEST_ALERT_SLACK_URL",
    "teams": "TEST_ALERT_TEAMS_URL",
}


class SmtpSink:
    """aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    # aiosmtpd calls the hook by this name.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[int, SmtpSink]]:
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


def alert_channels(
    httpserver: HTTPServer, smtp_port: int, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """The four channel kinds, pointed at the local receivers (URLs in the environment)."""
    for kind, path in WEBHOOK_PATHS.items():
        httpserver.expect_request(path, method="POST").respond_with_data("ok")
        monkeypatch.setenv(URL_ENV[kind], httpserver.url_for(path))
    return [
        *({"kind": kind, "url_env": URL_ENV[kind]} for kind in WEBHOOK_PATHS),
        {
            "kind": "email",
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "sender": "perennial@example.com",
            "to": ["oncall@example.com"],
        },
    ]


def posted(httpserver: HTTPServer, kind: str) -> list[dict[str, Any]]:
    """JSON bodies the receiver got on a channel kind's path, in order."""
    return [
        json.loads(request.get_data())
        for request, _ in httpserver.log
        if request.path == WEBHOOK_PATHS[kind]
    ]


def generic_of(httpserver: HTTPServer, kind: str) -> list[dict[str, Any]]:
    """Generic-webhook alerts of one alert kind."""
    return [body for body in posted(httpserver, "webhook") if body["kind"] == kind]


def mails_about(sink: SmtpSink, words: str) -> list[Message]:
    return [m for m in sink.messages if words in str(m["Subject"])]
