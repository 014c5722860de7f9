"""Champion moves: a decision recorded on its version, the `champion` alias moved last (a crash
in between leaves the old champion serving), its history kept for rollback, and the
`perennial.model.promoted` event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tasks.core.config import PerennialConfig
from tasks.notify.alerts import alert_champion_moved
from tasks.registry.client import (
    CHALLENGER,
    CHAMPION,
    RegistryError,
    connect,
    version_by_alias,
)
from tasks.registry.evaluate import Decision, Metrics
from tasks.registry.locks import alias_lock


def _decision_tags(
    decision: Decision,
    challenger: Metrics,
    champion: Metrics | None,
    compared_with: str | None,
    moved_by: str,
) -> dict[str, str]:
    return {
        "perennial.decision": "promoted" if decision.promote else "rejected",
        "perennial.decision_reasons": json.dumps(decision.reasons),
        "perennial.decision_numbers": json.dumps(
            {
                "challenger": challenger.as_dict(),
                "champion": champion.as_dict() if champion else None,
                "deltas": decision.deltas,
                "interval": decision.interval,
            }
        ),
        "perennial.compared_with": compared_with or "none",
        "perennial.moved_by": moved_by,
        "perennial.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def record_decision(
    config: PerennialConfig,
    version: str,
    decision: Decision,
    challenger: Metrics,
    champion: Metrics | None,
    champion_version: str | None,
    moved_by: str,
) -> Decision:
    """Tag the version with the decision, then move the alias it earned (champion last).

    Under the registry lock: if the champion changed while this version was being evaluated
    (another run promoted, or a rollback, meanwhile), the comparison is stale: the version is
    not promoted and says why."""
    client = connect(config)
    name = config.model_name
    with alias_lock(config):
        current = version_by_alias(config, CHAMPION)
        current_version = current.version if current else None
        if decision.promote and current_version != champion_version:
            moved = (
                f"champion moved to v{current_version} during evaluation "
                f"(compared with {champion_version or 'none'}): compare again before promoting"
            )
            decision = Decision(
                False,
                [*decision.reasons, moved],
                decision.deltas,
                decision.interval,
                [*decision.blockers, moved],
            )
        tags = _decision_tags(decision, challenger, champion, champion_version, moved_by)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if not decision.promote:
            client.set_registered_model_alias(name, CHALLENGER, version)
            return decision
        _move_champion(config, version, current_version, "train", moved_by, decision.reasons)
    # Told after the lock is released: a slow channel must not hold every other alias move.
    alert_champion_moved(config, "train", version, current_version, moved_by, decision.reasons)
    return decision


HISTORY_TAG = "perennial.champion_history"
HISTORY_LENGTH = 100
MOVES_TAG = "perennial.champion_moves"
MOVES_LENGTH = 200  # about 250 bytes each; a registered-model tag holds 100,000


def champion_history(client: Any, name: str) -> list[str]:
    """Versions that have been champion, oldest first, as moved by Perennial: the stack that
    `rollback` pops. Kept on the registered model, not derived from per-version tags: an old
    version promoted again would otherwise make a cycle of `replaced_version` tags."""
    tags = client.get_registered_model(name).tags
    return list(json.loads(tags.get(HISTORY_TAG, "[]")))


def champion_moves(client: Any, name: str) -> list[dict[str, str | None]]:
    """Every move of `champion`, oldest first (train, promote, rollback): the audit log, each
    entry with what it moved from and to, who moved it, why, and when."""
    tags = client.get_registered_model(name).tags
    return list(json.loads(tags.get(MOVES_TAG, "[]")))


def _move_champion(
    config: PerennialConfig,
    version: str,
    previous: str | None,
    action: str,
    moved_by: str,
    reasons: list[str],
    history: list[str] | None = None,
) -> None:
    """Point `champion` at `version` and record the move; the caller holds the registry lock
    and has checked that `previous` is the champion now. `history` is the rollback stack after
    the move (default: `version` pushed)."""
    client = connect(config)
    name = config.model_name
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    if action != "rollback":
        if previous and previous != version:
            client.set_model_version_tag(name, version, "perennial.replaced_version", previous)
        client.set_model_version_tag(name, version, "perennial.promoted_by", moved_by)
    if history is None:
        history = champion_history(client, name)
        if previous and (not history or history[-1] != previous):
            history.append(previous)
        history = [*history, version]
    move = {"action": action, "from": previous, "to": version, "by": moved_by, "at": stamp}
    moves = [*champion_moves(client, name), {**move, "reasons": "; ".join(reasons)[:200]}]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LENGTH:]))
    client.set_registered_model_tag(name, MOVES_TAG, json.dumps(moves[-MOVES_LENGTH:]))
    client.set_registered_model_alias(name, CHAMPION, version)  # the move itself, last
    if action != "rollback":
        challenger = version_by_alias(config, CHALLENGER)
        if challenger and challenger.version == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    emit_model_event(config, version, previous, moved_by, reasons)


def emit_model_event(
    config: PerennialConfig, version: str, previous: str | None, moved_by: str, reasons: list[str]
) -> None:
    from prefect.events import emit_event

    emit_event(
        event="perennial.model.promoted",
        resource={"prefect.resource.id": f"perennial.model.{config.model_name}"},
        related=[
            {
                "prefect.resource.id": f"perennial.dataset.{config.dataset}",
                "prefect.resource.role": "dataset",
            }
        ],
        payload={
            "model": config.model_name,
            "version": version,
            "previous": previous,
            "moved_by": moved_by,
            "reasons": reasons,
        },
    )


def promote_version(
    config: PerennialConfig,
    version: str,
    moved_by: str,
    reasons: list[str],
    compared_with: str | None,
    forced: bool = False,
) -> str | None:
    """Make `version` champion by hand. The caller checked the policy against the champion
    `compared_with`; under the lock, a champion that has moved since makes that check stale
    and the promotion is refused (a forced one goes ahead, and says what it overrode).
    Returns the previous champion."""
    client = connect(config)
    client.get_model_version(config.model_name, version)  # raises if it does not exist
    with alias_lock(config):
        current = version_by_alias(config, CHAMPION)
        previous = current.version if current else None
        if previous == version:
            raise RegistryError(f"v{version} of {config.model_name} is already the champion")
        if previous != compared_with:
            stale = (
                f"champion moved to v{previous} while v{version} was checked against "
                f"v{compared_with or 'none'}"
            )
            if not forced:
                raise RegistryError(f"{stale}: run `perennial promote` again to compare anew")
            reasons = [*reasons, f"{stale} (forced)"]
        client.set_model_version_tag(
            config.model_name, version, "perennial.manual_promotion", json.dumps(reasons)
        )
        _move_champion(config, version, previous, "promote", moved_by, reasons)
    alert_champion_moved(config, "promote", version, previous, moved_by, reasons)
    return previous


def rollback(config: PerennialConfig, moved_by: str) -> tuple[str, str]:
    """Point `champion` back to the version it replaced (the one before it in the champion
    history). Returns (from_version, to_version)."""
    client = connect(config)
    name = config.model_name
    with alias_lock(config):
        current = version_by_alias(config, CHAMPION)
        if current is None:
            raise RegistryError(
                f"{name} has no champion: nothing to roll back (train one with `perennial train`)"
            )
        history = champion_history(client, name)
        if not history or history[-1] != current.version:
            raise RegistryError(
                f"champion v{current.version} of {name} was not set by Perennial (history "
                f"{history}): point the alias by hand with `perennial promote --version N`"
            )
        if len(history) < 2:
            raise RegistryError(
                f"champion v{current.version} of {name} replaced no earlier version: "
                "nothing to roll back to"
            )
        previous = history[-2]
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(
            name,
            current.version,
            "perennial.rolled_back",
            f"{stamp} by {moved_by}: champion returned to v{previous}",
        )
        client.set_model_version_tag(name, previous, "perennial.restored_from", current.version)
        _move_champion(
            config,
            previous,
            current.version,
            "rollback",
            moved_by,
            [f"rollback from v{current.version}"],
            history=history[:-1],
        )
    alert_champion_moved(
        config,
        "rollback",
        previous,
        current.version,
        moved_by,
        [f"rollback from v{current.version}"],
    )
    return current.version, previous


def recent_decisions(config: PerennialConfig, limit: int = 5) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    client = connect(config)
    try:
        found = client.search_model_versions(f"name = '{config.model_name}'")
    except MlflowException:
        return []
    newest = sorted(found, key=lambda v: int(v.version), reverse=True)[:limit]
    return [
        {
            "version": str(v.version),
            "decision": v.tags.get("perennial.decision", "pending"),
            "reasons": json.loads(v.tags.get("perennial.decision_reasons", "[]")),
            "batches": v.tags.get("perennial.batches", ""),
        }
        for v in newest
    ]
