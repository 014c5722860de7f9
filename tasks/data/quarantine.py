"""Quarantine: where a batch the gate failed goes. Its raw file is copied under `quarantine/`
with a reason file (the verdict, the failed checks and the warnings); an earlier revision's
reason is kept as `<batch>.r<N>.reason.json`, so the history of a corrected batch stays whole,
and any validated copy of the batch is removed."""

from __future__ import annotations

from dataclasses import asdict

from tasks.core import catalog
from tasks.core.catalog import quarantine_reason_key
from tasks.core.config import PerennialConfig
from tasks.core.storage import Storage
from tasks.data.expectations import EXPECTATION, FILE_CHECK
from tasks.data.verdict import GateResult, stored_verdict


def quarantine(
    storage: Storage,
    config: PerennialConfig,
    result: GateResult,
    raw_key: str,
    data: bytes | None,
) -> None:
    """Copy the raw file to quarantine with its reason; remove any stale validated copy."""
    storage.delete(catalog.key("validated", config, batch=result.batch))
    storage.delete(catalog.key("validated_summary", config, batch=result.batch))
    archive_reason(storage, config, result.batch, unless_sha256=result.sha256)
    if data is not None:
        storage.write_bytes(
            catalog.key("quarantined_file", config, file=raw_key.rsplit("/", 1)[-1]), data
        )
    result.reason_key = quarantine_reason_key(config, result.batch)
    stage = FILE_CHECK if any(o.stage == FILE_CHECK for o in result.outcomes) else EXPECTATION
    storage.write_json(
        result.reason_key,
        {
            **stored_verdict(result),
            "dataset": config.dataset,
            "stage": stage,
            "message": result.headline(),
            "failed": [asdict(o) for o in result.blocking_failures()],
            "warnings": [asdict(o) for o in result.warnings()],
        },
    )


def archive_reason(
    storage: Storage, config: PerennialConfig, batch: str, unless_sha256: str | None = None
) -> None:
    """Keep an earlier revision's reason as `<batch>.r<N>.reason.json`: history keeps both, and
    `<batch>.reason.json` always speaks of the newest revision."""
    current = quarantine_reason_key(config, batch)
    if not storage.exists(current):
        return
    reason = storage.read_json(current)
    if reason.get("sha256") == unless_sha256:
        return
    revision = reason.get("revision", 1)
    storage.write_json(quarantine_reason_key(config, batch, revision), reason)
    storage.delete(current)
