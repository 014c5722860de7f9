"""Alerts that reach people: a quarantined batch, drift, a failed training run, a champion move,
a failed serving swap, sent to the channels of the dataset YAML's `alerts:` section (delivery:
tasks/notify/channels.py).

Every alert is claimed first in the storage layer (`alerts/<dataset>/<kind>/<subject>.<n>.json`,
an atomic create): one alert per (dataset, kind, subject) within `alerts.window_minutes`, however
many processes raise it. Alerting never breaks the pipeline: `send_alert` logs a failing channel
(never its URL or password) and returns.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tasks.core import catalog
from tasks.core.run_logging import run_logger
from tasks.notify.channels import (
    Alert,
    AlertKind,
    ChannelNotSet,
    describe_channel,
    post_webhook,
    scrub,
    send_email,
)

if TYPE_CHECKING:
    from tasks.core.config import PerennialConfig
    from tasks.core.storage import Storage

SUBJECT_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class Outcome:
    """What `send_alert` did: `duplicate_of` names the claim of an earlier alert it repeated."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    duplicate_of: str | None = None


# --- links ---------------------------------------------------------------------------------


def run_link(fallback_command: str, flow_run_id: str | None = None) -> str:
    """The Prefect UI page of the flow run this is called in (or of `flow_run_id`) when a served
    UI is known (PREFECT_UI_URL, derived from PREFECT_API_URL), else the command to inspect."""
    from prefect.runtime import flow_run
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    run_id = flow_run_id or flow_run.id
    ui = PREFECT_UI_URL.value() if PREFECT_API_URL.value() else None
    if run_id and ui:
        return f"{str(ui).rstrip('/')}/runs/flow-run/{run_id}"
    return fallback_command


def cli_command(config: PerennialConfig, *args: str) -> str:
    where = f" --config {config.config_path}" if config.config_path else ""
    return f"perennial {' '.join(args)}{where}"


# --- de-duplication ------------------------------------------------------------------------


def claim(storage: Storage, config: PerennialConfig, alert: Alert, now: datetime) -> str | None:
    """Claim the right to send `alert`: the key of an earlier claim within the window (a
    duplicate), or None after creating a new claim. Claims are numbered per subject; of two
    processes racing for the next number, the atomic create lets one win, the other is told."""
    folder = catalog.key("alerts", config, kind=alert.kind)
    subject = SUBJECT_UNSAFE.sub("_", alert.subject)[:100] or "_"
    numbers = [
        int(name.rsplit("/", 1)[-1].split(".")[1])
        for name in storage.list(folder)
        if name.rsplit("/", 1)[-1].startswith(f"{subject}.")
    ]
    newest = max(numbers, default=0)
    window = timedelta(minutes=config.alerts.window_minutes)
    if newest:
        earlier = f"{folder}/{subject}.{newest}.json"
        sent_at = datetime.fromisoformat(storage.read_json(earlier)["claimed_at"])
        if now - sent_at < window:
            return earlier
    record = {"claimed_at": now.isoformat(), "alert": asdict(alert), "pid": os.getpid()}
    key = f"{folder}/{subject}.{newest + 1}.json"
    if storage.create_bytes(key, json.dumps(record, indent=2, default=str).encode()):
        return None
    return key


# --- sending -------------------------------------------------------------------------------


def send_alert(config: PerennialConfig, alert: Alert, storage: Storage | None = None) -> Outcome:
    """Send `alert` to every channel, once per window. Never raises: alerting must not break
    the flow that raised it."""
    log = run_logger("perennial.alerts")
    outcome = Outcome()
    if not config.alerts.channels:
        return outcome
    try:
        from tasks.core.storage import open_storage

        duplicate = claim(storage or open_storage(config.home), config, alert, datetime.now(UTC))
    except Exception as exc:  # a storage outage: better twice than never
        log.warning("alert de-duplication unavailable (%s): sending anyway", exc)
        duplicate = None
    if duplicate is not None:
        log.info("alert %s %s of %s not sent: already sent (%s)", *_who(alert), duplicate)
        outcome.duplicate_of = duplicate
        return outcome
    for channel in config.alerts.channels:
        name = describe_channel(channel)
        try:
            if channel.kind == "email":
                send_email(channel, alert)
            else:
                post_webhook(channel, alert)
        except ChannelNotSet as exc:
            log.info("alert channel %s skipped: %s", name, exc)
            outcome.skipped.append(name)
        except Exception as exc:
            reason = scrub(f"{type(exc).__name__}: {exc}", channel)
            log.warning("alert %s %s of %s: channel %s failed: %s", *_who(alert), name, reason)
            outcome.failed.append(name)
        else:
            outcome.sent.append(name)
    log.info("alert %s %s of %s sent to %s", *_who(alert), ", ".join(outcome.sent) or "nobody")
    return outcome


def _who(alert: Alert) -> tuple[str, str, str]:
    return alert.kind, alert.subject, alert.dataset


# --- the alerts, one per kind: each builds its content and sends it, never raising ---------


def _send_safely(config: PerennialConfig, build: Any) -> Outcome:
    try:
        return send_alert(config, build())
    except Exception as exc:  # building the content failed: say so, never stop the caller
        run_logger("perennial.alerts").warning("alert of %s not sent: %s", config.dataset, exc)
        return Outcome()


def alert_quarantine(config: PerennialConfig, result: Any) -> Outcome:
    """A batch failed the gate (`result`: tasks.data.verdict.GateResult): each rule, column,
    example."""

    def build() -> Alert:
        failed = result.blocking_failures()
        facts: dict[str, Any] = {"batch": result.batch, "revision": result.revision}
        for number, o in enumerate(failed[:5], start=1):
            facts[f"rule {number}"] = o.expectation
            facts[f"column {number}"] = o.column or "(table)"
            facts[f"example {number}"] = o.error or (o.examples[:3] if o.examples else "-")
        facts["reason file"] = result.reason_key or "-"
        return Alert(
            config.dataset,
            "quarantine",
            result.batch,
            f"{config.dataset} {result.batch} quarantined: {len(failed)} critical check(s) failed",
            facts,
            run_link(cli_command(config, "validate", "--batch", result.batch)),
        )

    return _send_safely(config, build)


def alert_drift(config: PerennialConfig, report: Any) -> Outcome:
    """A batch drifted (`report`: tasks.watch.drift.DriftReport): batch, max PSI, features."""

    def build() -> Alert:
        return Alert(
            config.dataset,
            "drift",
            report.batch,
            f"{config.dataset} {report.batch} drifted: max PSI {report.max_psi:.3f}",
            {
                "batch": report.batch,
                "max PSI": round(report.max_psi, 4),
                "drifted features": report.drifted_features or ["-"],
                "reference version": report.reference_version,
                "why": report.reasons,
            },
            run_link(cli_command(config, "monitor", "--batch", report.batch)),
        )

    return _send_safely(config, build)


def alert_champion_moved(
    config: PerennialConfig,
    action: str,
    version: str,
    previous: str | None,
    moved_by: str,
    reasons: list[str],
) -> Outcome:
    """`champion` moved (train or promote: a promotion; rollback): who, why, the numbers (the
    decision's reasons carry the metrics)."""

    def build() -> Alert:
        kind: AlertKind = "rollback" if action == "rollback" else "promotion"
        verb = "rolled back to" if kind == "rollback" else "promoted"
        return Alert(
            config.dataset,
            kind,
            f"v{version}",
            f"{config.model_name} v{version} {verb} (champion was v{previous or 'none'})",
            {
                "model": config.model_name,
                "champion": f"v{version}",
                "previous": f"v{previous}" if previous else "none",
                "by": moved_by,
                "how": action,
                "why": reasons or ["-"],
            },
            run_link(cli_command(config, "status")),
        )

    return _send_safely(config, build)


def alert_swap_failed(config: PerennialConfig, alias: str, version: str, error: str) -> Outcome:
    """`perennial serve` could not load or warm up a version; the old one keeps serving."""

    def build() -> Alert:
        return Alert(
            config.dataset,
            "swap_failed",
            f"{alias}-v{version}",
            f"serving {config.model_name}: v{version} ({alias}) failed to load, not swapped in",
            {"model": config.model_name, "alias": alias, "version": version, "error": error},
            cli_command(config, "status"),
        )

    return _send_safely(config, build)


def alert_failed_training(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (on_failure, on_crashed) of the training flow: the run failed or crashed."""
    from tasks.core.config import dataset_config

    try:  # the run's own dataset and folder: in the CLI's process, the config it parsed
        parameters = flow_run.parameters
        config = dataset_config(parameters.get("dataset"), parameters.get("configs_dir"))
    except Exception as exc:  # the config itself may be what failed: nowhere to send
        run_logger("perennial.alerts").warning("training failed; no alert: %s", exc)
        return
    batches = str(flow_run.parameters.get("batches") or "all-landed")

    def build() -> Alert:
        message = str(state.message or state.name)[:500]
        return Alert(
            config.dataset,
            "training_failed",
            batches,
            f"{config.dataset} training {state.name.lower()}: {flow_run.name}",
            {
                "state": state.name,
                "batches": batches,
                "reason": flow_run.parameters.get("reason", "-"),
                "error": message,
            },
            run_link(cli_command(config, "status"), flow_run_id=str(flow_run.id)),
        )

    _send_safely(config, build)
