"""Manual registry moves: promote a chosen version (policy checks shown, `force` needs a reason)
and roll back to the champion's predecessor. Both are flows of tasks, so every move is a
recorded run with its task runs."""

from __future__ import annotations

from prefect import flow

from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.registry.promotion import (
    PromotionSummary,
    RollbackSummary,
    check_manual_promotion_task,
    promote_by_hand_task,
    rollback_task,
)


@flow(name="promote", log_prints=True)
def promote(
    version: str,
    reason: str,
    force: bool = False,
    dataset: str = DEFAULT_DATASET,
    configs_dir: str | None = None,
) -> PromotionSummary:
    """Check `version` against the champion on the newest validated batch, then make it the
    champion if the policy agrees, or if `force` (with a reason) overrides it."""
    config = dataset_config(dataset, configs_dir)
    comparison, holdout, compared_with = check_manual_promotion_task(config, version)
    return promote_by_hand_task(config, version, comparison, holdout, compared_with, reason, force)


@flow(name="rollback", log_prints=True)
def rollback_champion(
    reason: str = "manual rollback",
    dataset: str = DEFAULT_DATASET,
    configs_dir: str | None = None,
) -> RollbackSummary:
    """Point `champion` back to the version the current champion replaced."""
    return rollback_task(dataset_config(dataset, configs_dir), reason)
