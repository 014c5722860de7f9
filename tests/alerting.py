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


def own_routable_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (a receiver bound there is reached as
    any other host on the network would be), or None. A UDP connect only picks the route: no
    packet is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def self_signed_certificate(address: str, folder: Any) -> tuple[str, str]:
    """A certificate for the IP `address` and its key, as PEM files in `folder`: trusted by a
    client whose SSL_CERT_FILE is the certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = f"{folder}/cert.pem", f"{folder}/key.pem"
    with open(cert_file, "wb") as out:
        out.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_file, key_file


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
