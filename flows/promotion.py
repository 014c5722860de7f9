"""Manual registry moves: promote a chosen version (policy checks shown, `force` needs a reason)
and roll back to the champion's predecessor. Both are flows, so every move is a recorded run."""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from tasks.config import dataset_config
from tasks.evaluate import compare
from tasks.features import features_and_label, load_validated
from tasks.registry import (
    CHAMPION,
    RegistryError,
    load_model,
    promote_version,
    rollback,
    version_by_alias,
)
from tasks.storage import open_storage
from tasks.validate import landed_batches


class PolicyRefusedError(RuntimeError):
    """A manual promotion that the policy refuses and that was not forced."""


def _mover(how: str, reason: str) -> str:
    return f"{how} (flow run {flow_run.get_id() or 'local'}): {reason}"


@flow(name="promote", log_prints=True)
def promote(
    version: str, reason: str, force: bool = False, dataset: str = "flights"
) -> dict[str, Any]:
    """Check `version` against the champion on the newest validated batch, then make it the
    champion if the policy agrees, or if `force` (with a reason) overrides it."""
    config = dataset_config(dataset)
    storage = open_storage(config.home)
    validated = [
        b
        for b in landed_batches(storage, config)
        if storage.exists(f"validated/{config.dataset}/{b}.parquet")
    ]
    if not validated:
        raise RegistryError(f"no validated batch of {config.dataset} to check v{version} on")
    holdout = validated[-1]
    x, y = features_and_label(load_validated(storage, config, [holdout]), config)
    champion = version_by_alias(config, CHAMPION)
    comparison = compare(
        load_model(config, version=version),
        load_model(config, champion.version) if champion else None,
        x,
        y,
        config.primary_metric,
        config.guard_metrics,
        config.promotion,
        config.hpo.seed,
    )
    checks = comparison.decision.reasons
    if not comparison.decision.promote and not force:
        raise PolicyRefusedError(
            f"policy refuses v{version} on holdout {holdout}: "
            + "; ".join(checks)
            + " (use --force with a --reason to override)"
        )
    forced = not comparison.decision.promote
    why = [f"manual promotion{' FORCED past the policy' if forced else ''}: {reason}", *checks]
    previous = promote_version(
        config,
        version,
        _mover("perennial promote", reason),
        why,
        compared_with=champion.version if champion else None,
        forced=force,
    )
    return {
        "model": config.model_name,
        "champion": version,
        "previous": previous,
        "forced": forced,
        "holdout": holdout,
        "checks": checks,
    }


@flow(name="rollback", log_prints=True)
def rollback_champion(reason: str = "manual rollback", dataset: str = "flights") -> dict[str, Any]:
    """Point `champion` back to the version the current champion replaced."""
    config = dataset_config(dataset)
    demoted, restored = rollback(config, _mover("perennial rollback", reason))
    return {"model": config.model_name, "champion": restored, "demoted": demoted}
