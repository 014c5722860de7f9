"""Real receivers for alert tests: an HTTP server (pytest-httpserver) for the webhook, Slack and
Teams channels, and an SMTP server (aiosmtpd, which takes any login) for email. Secrets reach the
code through the environment, as in production."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

WEBHOOK_PATHS = {"webhook": "/hooks/generic", "slack": "/hooks/slack", "teams": "/hooks/teams"}
URL_ENV = {
    "webhook": "PERENNIAL_ALERT_TEST_WEBHOOK_URL",
    "slack": "PERENNIAL_ALERT_TEST_SLACK_URL",
    "teams": "PERENNIAL_ALERT_TEST_TEAMS_URL",
}


class SmtpSink:
    """aiosmtpd handler that keeps every message it is given, and every login (any login is
    accepted, over plain SMTP too: what a password sent in clear would reach)."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.logins: list[tuple[str, str]] = []
        self.connections = 0

    # aiosmtpd calls the hooks by these names.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult

        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)


@contextmanager
def running_smtp_sink(host: str = "127.0.0.1") -> Iterator[tuple[int, SmtpSink]]:
    """An SMTP server on `host` (a free port) that offers AUTH without TLS."""
    from aiosmtpd.controller import Controller

    with socket.socket() as probe:
        probe.bind((host, 0))
        port = int(probe.getsockname()[1])
    sink = SmtpSink()
    controller = Controller(
        sink, hostname=host, port=port, authenticator=sink.authenticate, auth_require_tls=False
    )
    controller.start()
    sink.connections = 0  # the controller's own check that it is up
    try:
        yield port, sink
    finally:
        controller.stop()


@pytest.fixture
def smtp_sink() -> Iterator[tuple[int, SmtpSink]]:
    with running_smtp_sink() as running:
        yield running


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
