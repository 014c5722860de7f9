"""Who is told when something needs a person (`alerts:`): webhook, Slack, Teams and email
channels, each naming where its secret is read (never the secret itself).

A dataset YAML is edited by more people than the worker's environment is, and a channel sends
what it reads to a host the YAML names. So a channel reads only variables named
`PERENNIAL_ALERT_*` (or Prefect Secret blocks), never another secret of the process (MLflow's
password, the Prefect auth string); and a password or webhook URL crosses the network only over
TLS: without it, only to loopback (`is_loopback`)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tasks.core.config_section import Section

ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
ALERT_ENV_PREFIX = "PERENNIAL_ALERT_"
LOOPBACK = "loopback (127.0.0.0/8, ::1, localhost)"


def is_loopback(host: str | None) -> bool:
    """Whether `host` is this machine by its address or its one reserved name: 127.0.0.0/8, ::1
    or localhost. Any other name may resolve anywhere; a numeric form that is not a plain address
    (`2130706433`) is not guessed at. What crosses a connection to it never leaves the machine."""
    name = (host or "").removeprefix("[").removesuffix("]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def alert_env_name(value: str | None, what: str, example: str) -> str | None:
    """A channel's `<what>_env`: a variable name with the alert prefix. The value is never
    repeated: a URL or password pasted here by mistake is a secret."""
    if value is None:
        return None
    if not ENV_NAME.fullmatch(value):
        raise ValueError(f"{what}_env is not an environment variable name (A-Z, 0-9, _)")
    if not value.startswith(ALERT_ENV_PREFIX) or value == ALERT_ENV_PREFIX:
        raise ValueError(
            f"{what}_env must name a variable starting with {ALERT_ENV_PREFIX} (alert channels "
            f"read no other secret of the process): rename the variable, e.g. {example}, or keep "
            f"it in a Prefect Secret block named by {what}_secret"
        )
    return value


def _refuse_literal_secrets(data: Any, literal: str, names: str) -> Any:
    """A URL or password written in the YAML would sit in git and in every copy of the file."""
    if isinstance(data, dict) and literal in data:
        raise ValueError(
            f"a literal {literal} in the YAML is refused (it is a secret): put it in an "
            f"environment variable or a Prefect Secret block and name it with {names}"
        )
    return data


class SecretNames(Section):
    """Where a secret is read at send time: an environment variable or a Prefect Secret block."""

    @staticmethod
    def _one_source(env: str | None, secret: str | None, what: str) -> None:
        if (env is None) == (secret is None):
            raise ValueError(f"name the {what} with exactly one of {what}_env or {what}_secret")
        if secret is not None and not BLOCK_NAME.fullmatch(secret):
            raise ValueError(f"{what}_secret is not a Prefect block name (a-z, 0-9, -)")


class WebhookChannel(SecretNames):
    """A JSON POST: `webhook` (Perennial's own JSON), `slack` (incoming webhook) or `teams`
    (Workflows webhook, Adaptive Card). The URL is a secret: named here, never written."""

    kind: Literal["webhook", "slack", "teams"]
    url_env: str | None = Field(None, description="PERENNIAL_ALERT_* variable holding the URL.")
    url_secret: str | None = Field(None, description="Prefect Secret block holding the URL.")

    @model_validator(mode="before")
    @classmethod
    def _no_literal_url(cls, data: Any) -> Any:
        return _refuse_literal_secrets(data, "url", "url_env or url_secret")

    @field_validator("url_env")
    @classmethod
    def _url_env_has_prefix(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = str(info.data.get("kind", "webhook")).upper()
        return alert_env_name(value, "url", f"{ALERT_ENV_PREFIX}{kind}_URL")

    @model_validator(mode="after")
    def _url_named_once(self) -> WebhookChannel:
        self._one_source(self.url_env, self.url_secret, "url")
        return self


class EmailChannel(SecretNames):
    """Email over SMTP, sent from the flow that alerts (Prefect automations cannot send email:
    PrefectHQ/prefect#16881)."""

    kind: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls",
        description="starttls (587), ssl (465), or none (a loopback relay, or no password).",
    )
    sender: str = Field(description="The From address.")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = Field(
        None, description="PERENNIAL_ALERT_* variable of the password."
    )
    password_secret: str | None = Field(None, description="Prefect Secret block of it.")

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        return _refuse_literal_secrets(data, "password", "password_env or password_secret")

    @field_validator("password_env")
    @classmethod
    def _password_env_has_prefix(cls, value: str | None) -> str | None:
        return alert_env_name(value, "password", f"{ALERT_ENV_PREFIX}SMTP_PASSWORD")

    @model_validator(mode="after")
    def _password_with_username(self) -> EmailChannel:
        if self.username is not None:
            self._one_source(self.password_env, self.password_secret, "password")
        elif self.password_env or self.password_secret:
            raise ValueError("a password needs a username")
        return self

    @model_validator(mode="after")
    def _password_only_over_tls(self) -> EmailChannel:
        if self.password_in_clear():
            raise ValueError(self.clear_password_refused())
        return self

    def password_in_clear(self) -> bool:
        """Whether the password would cross the network unencrypted: plain SMTP, off loopback."""
        return self.username is not None and self.security == "none" and not is_loopback(self.host)

    def clear_password_refused(self) -> str:
        return (
            f"security: none with a password to {self.host[:100]} would send the password in "
            f"clear: use security: starttls (port 587) or ssl (465), or a relay on {LOOPBACK}"
        )


class AlertsConfig(Section):
    """Who is told when something needs a person. One alert per (dataset, kind, subject) within
    the window; a drift alert's retrain is de-duplicated over the same window."""

    channels: list[Annotated[WebhookChannel | EmailChannel, Field(discriminator="kind")]] = Field(
        default_factory=list
    )
    window_minutes: float = Field(
        60.0, gt=0, description="Repeats of an alert (and drift retrains) within this are dropped."
    )
