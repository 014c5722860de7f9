"""`perennial promote`, `rollback` and `status`: moving the champion alias by hand, and what the
registry holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app


@app.command()
def promote(
    version: str = typer.Option(..., "--version", help="Registered version to make champion."),
    reason: str = typer.Option("", "--reason", help="Why (recorded on the version)."),
    force: bool = typer.Option(False, "--force", help="Override the policy (needs --reason)."),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Make a version champion: the policy is checked on the newest validated batch first."""
    if force and not reason.strip():
        runner.fail("--force needs a --reason: overriding the policy must be explained", 2)
    from flows.promotion import promote as promote_flow

    cfg = runner.read_config(config)
    result = runner.run(
        promote_flow,
        version=version,
        reason=reason or "manual promotion",
        force=force,
        **runner.dataset_parameters(cfg),
    )
    human = (
        f"{result.model}: champion is now v{result.champion} "
        f"(was {'v' + result.previous if result.previous else 'none'})"
        + (" — FORCED past the policy" if result.forced else "")
        + "\n"
        + "\n".join(f"  - {c}" for c in result.checks)
    )
    runner.emit(result, as_json, human)


@app.command()
def rollback(
    reason: str | None = typer.Option(
        None, "--reason", help="Why (recorded; default: manual rollback)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Point the champion back to the version it replaced."""
    from flows.promotion import rollback_champion

    cfg = runner.read_config(config)
    result = runner.run(
        rollback_champion, **runner.given(reason=reason), **runner.dataset_parameters(cfg)
    )
    runner.emit(
        result,
        as_json,
        f"{result.model}: champion back to v{result.champion} (v{result.demoted} demoted)",
    )


def registry_status(cfg: Any) -> dict[str, Any]:
    """Champion, challenger, decisions and costs from the registry: a SQLite registry is read
    with sqlite3 (status answers in well under 2 s; `import mlflow` alone takes 3-6 s), any
    other back end through MLflow's client."""
    from tasks.registry.reader import Unreadable, status_snapshot

    try:
        found = status_snapshot(cfg.tracking_uri, cfg.model_name, cfg.dataset)
    except Unreadable:
        found = registry_status_by_mlflow(cfg)
    for alias in ("champion", "challenger"):
        if found[alias] is not None:
            found[alias] = status_entry(found[alias])
    return found


def status_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """What `status` shows of an aliased version, from either registry read."""
    from tasks.registry.lineage import batches_seen, judged_on

    seen = batches_seen(entry["tags"])
    return {
        "version": entry["version"],
        "run_id": entry["run_id"],
        "metrics": entry["metrics"],
        "batches": entry["tags"].get("perennial.batches", ""),
        "trained_on": seen,
        "judged_on": judged_on(entry["tags"]),
    }


def registry_status_by_mlflow(cfg: Any) -> dict[str, Any]:
    from tasks.registry.champion import recent_decisions
    from tasks.registry.client import CHALLENGER, CHAMPION, version_by_alias
    from tasks.registry.cost import recent_costs

    found: dict[str, Any] = {}
    for alias in (CHAMPION, CHALLENGER):
        info = version_by_alias(cfg, alias)
        found[alias] = None if info is None else vars(info)
    found["decisions"] = recent_decisions(cfg)
    found["costs"] = recent_costs(cfg)
    return found


@app.command()
def status(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Show the champion and challenger, their holdout metrics, and the latest decisions."""
    cfg = runner.read_config(config)
    found = registry_status(cfg)
    payload: dict[str, Any] = {"model": cfg.model_name}
    payload.update((key, found[key]) for key in ("champion", "challenger", "decisions"))
    lines = [f"model {cfg.model_name}"]
    for alias in ("champion", "challenger"):
        entry = payload[alias]
        if entry is None:
            lines.append(f"  {alias}: none")
        else:
            auc = entry["metrics"].get("holdout_roc_auc")
            lines.append(
                f"  {alias}: v{entry['version']} holdout AUC {auc:.4f}"
                if auc is not None
                else f"  {alias}: v{entry['version']}"
            )
            seen = entry["trained_on"]
            if seen:
                lines.append(
                    f"    trained on {seen[0]}..{seen[-1]} ({len(seen)} batches), judged on "
                    f"{entry['judged_on']}"
                    + (" (then refit on it)" if entry["judged_on"] in seen else " (unseen)")
                )
    for item in payload["decisions"]:
        lines.append(f"  v{item['version']} {item['decision']}: {'; '.join(item['reasons'])}")
    payload["costs"] = found["costs"]
    if payload["costs"]:
        lines.append(f"  cost of the last training runs (prices of {cfg.cost.prices_as_of}):")
    for run in payload["costs"]:
        version = f"v{run['version']}" if run.get("version") else run["run_id"][:8]
        lines.append(
            f"    {version}: {run.get('wall_seconds', 0):.1f} s wall, "
            f"{run.get('cpu_seconds', 0):.1f} CPU s, peak {run.get('peak_rss_mb', 0):,.0f} MB, "
            f"estimated ${run.get('usd', 0):.6f}"
        )
    runner.emit(payload, as_json, "\n".join(lines))
