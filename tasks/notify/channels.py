"""Delivery of an alert to one channel: Perennial's own JSON, Slack's incoming-webhook `text` and
a Teams Workflows Adaptive Card, POSTed with urllib; email over smtplib. Secrets are read here,
when a channel is used, and never logged. The config's rules on secrets (tasks/core/config_alerts)
are checked again here, before a byte goes out: a webhook's URL is only known now, and a channel
may have been built past the config.

Not Prefect's Slack/Teams notification blocks: they go through apprise, which accepts only the
vendors' own URL shapes (hooks.slack.com, Microsoft's Workflows URLs), so neither a self-hosted
relay nor a local test receiver could be used; and automations cannot send email at all
(PrefectHQ/prefect#16881).
"""

from __future__ import annotations

import json
import os
import smtplib
import ssl
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from tasks.core.config_alerts import ALERT_ENV_PREFIX, LOOPBACK, is_loopback

if TYPE_CHECKING:
    from tasks.core.config_alerts import EmailChannel, WebhookChannel

AlertKind = Literal[
    "quarantine", "drift", "training_failed", "promotion", "rollback", "swap_failed"
]
SEND_TIMEOUT_S = 10.0


@dataclass
class Alert:
    """One thing a person should know: `subject` is what it is about (a batch, a version, a
    batch range) and, with dataset and kind, what de-duplication counts."""

    dataset: str
    kind: AlertKind
    subject: str
    title: str
    facts: dict[str, Any] = field(default_factory=dict)
    link: str = ""

    def lines(self) -> list[str]:
        return [f"{name}: {plain(value)}" for name, value in self.facts.items()]


class ChannelNotSet(LookupError):
    """The channel's secret is not in the environment: the channel is not set up here."""


class ClearTextRefused(ValueError):
    """The channel would send a secret (a password, a webhook's URL) over a connection without
    TLS to a host other than loopback. Its message never holds the URL."""


def plain(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def read_secret(env: str | None, block: str | None) -> str:
    """A channel's secret, read when it is used (never kept in the config or logged)."""
    if env is None and block is None:
        raise ChannelNotSet("no secret named")
    if env is not None:
        if not env.startswith(ALERT_ENV_PREFIX):
            raise ValueError(f"{env} is not a {ALERT_ENV_PREFIX}* variable: not read")
        value = os.environ.get(env)
        if not value:
            raise ChannelNotSet(f"{env} is not set")
        return value
    from prefect.blocks.system import Secret

    stored: Any = Secret.load(str(block))  # a sync call here: flows and the server use threads
    return str(stored.get())


def slack_escaped(text: str) -> str:
    """Text that Slack shows as written: `&`, `<` and `>` escaped as Slack documents, so that a
    `<!channel>`, `<@U123>` or `<https://...|label>` in a reason typed in the UI is inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_body(kind: str, alert: Alert) -> dict[str, Any]:
    """The JSON each kind of webhook documents."""
    text = "\n".join(alert.lines())
    is_url = alert.link.startswith("http")
    if kind == "slack":  # incoming webhook: `text` in mrkdwn, <url|label> links
        # The link is ours (the Prefect UI's URL); a `|` in it would end the URL early.
        url = slack_escaped(alert.link).replace("|", "%7C")
        link = f"<{url}|Open in Prefect>" if is_url else f"`{slack_escaped(alert.link)}`"
        return {"text": f"*{slack_escaped(alert.title)}*\n{slack_escaped(text)}\n{link}"}
    if kind == "teams":  # Workflows "post to a channel when a webhook request is received"
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": alert.title, "weight": "Bolder", "wrap": True},
                {
                    "type": "FactSet",
                    "facts": [{"title": k, "value": plain(v)} for k, v in alert.facts.items()],
                },
            ],
        }
        if is_url:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": alert.link}]
        else:
            card["body"].append({"type": "TextBlock", "text": alert.link, "wrap": True})
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }
    return {**asdict(alert), "text": text}


def post_webhook(channel: WebhookChannel, alert: Alert) -> None:
    """POST the channel's JSON. urllib, not httpx: httpx logs every request's full URL at INFO
    (and Prefect shows httpx's INFO lines), and a webhook's URL is its secret."""
    url = read_secret(channel.url_env, channel.url_secret)
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:  # its message may quote the URL
        raise ValueError("the URL is not a valid http(s) URL") from None
    if scheme not in ("https", "http"):
        raise ValueError("the URL is not http(s)")
    if scheme == "http" and not is_loopback(host):
        raise ClearTextRefused(
            f"the URL is http:// to a host other than {LOOPBACK}: not sent (the URL is a "
            "secret and would cross the network in clear); use its https:// URL"
        )
    request = urllib.request.Request(
        url,
        data=json.dumps(webhook_body(channel.kind, alert), default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT_S):
            pass
    except urllib.error.HTTPError as exc:  # its text names the status, not the URL
        raise RuntimeError(f"answered HTTP {exc.code}") from None


def send_email(channel: EmailChannel, alert: Alert) -> None:
    message = EmailMessage()
    message["Subject"] = f"[perennial] {alert.title}"
    message["From"] = channel.sender
    message["To"] = ", ".join(channel.to)
    message.set_content("\n".join([alert.title, "", *alert.lines(), "", alert.link]))
    if channel.password_in_clear():  # before connecting, whatever built the channel
        raise ClearTextRefused(channel.clear_password_refused())
    password = (
        read_secret(channel.password_env, channel.password_secret) if channel.username else None
    )
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if channel.security == "ssl":
        smtp = smtplib.SMTP_SSL(channel.host, channel.port, timeout=SEND_TIMEOUT_S, context=context)
    else:
        smtp = smtplib.SMTP(channel.host, channel.port, timeout=SEND_TIMEOUT_S)
    with smtp:
        if channel.security == "starttls":
            smtp.starttls(context=context)
        if channel.username and password is not None:
            smtp.login(channel.username, password)
        smtp.send_message(message)


def describe_channel(channel: WebhookChannel | EmailChannel) -> str:
    if channel.kind == "email":
        return f"email via {channel.host}:{channel.port}"
    return f"{channel.kind} ({channel.url_env or f'secret {channel.url_secret}'})"


def scrub(text: str, channel: WebhookChannel | EmailChannel) -> str:
    """An error message without the channel's secret, whatever the library put in it."""
    try:
        if channel.kind == "email":
            if not channel.username:
                return text
            secret = read_secret(channel.password_env, channel.password_secret)
        else:
            secret = read_secret(channel.url_env, channel.url_secret)
    except Exception:
        return text
    return text.replace(secret, "***") if secret else text
