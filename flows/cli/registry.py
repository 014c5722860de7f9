"""`perennial promote`, `rollback` and `status`: moving the champion alias by hand, and what the
registry holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app
from tasks.core.results import ABSENT_IF_NONE

if TYPE_CHECKING:
    from tasks.core.config import PerennialConfig


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


@dataclass
class AliasStatus:
    """What `status` shows of an aliased version: its holdout metrics and what it saw."""

    version: str
    run_id: str
    metrics: dict[str, float]
    batches: str  # the run's batches, as tagged
    trained_on: list[str]
    judged_on: str


@dataclass
class RegistryStatus:
    """What `perennial status` reports: champion and challenger (None: no such alias), the
    latest decisions and the cost of the latest training runs, as the registry records them."""

    model: str
    champion: AliasStatus | None
    challenger: AliasStatus | None
    decisions: list[dict[str, Any]]
    costs: list[dict[str, Any]]
    # Versions trained on rows `perennial forget` erased; absent from the JSON when none are.
    erased: list[dict[str, Any]] | None = field(default=None, metadata=ABSENT_IF_NONE)


def registry_status(cfg: PerennialConfig) -> RegistryStatus:
    """Champion, challenger, decisions and costs from the registry: a SQLite registry is read
    with sqlite3 (status answers in well under 2 s; `import mlflow` alone takes 3-6 s), any
    other back end through MLflow's client."""
    from tasks.registry.reader import Unreadable, status_snapshot

    try:
        found = status_snapshot(cfg.tracking_uri, cfg.model_name, cfg.dataset)
    except Unreadable:
        found = registry_status_by_mlflow(cfg)
    return status_of(cfg.model_name, found)


def status_of(model: str, found: dict[str, Any]) -> RegistryStatus:
    """The status of what either registry read found."""

    def entry(raw: dict[str, Any] | None) -> AliasStatus | None:
        return None if raw is None else status_entry(raw)

    return RegistryStatus(
        model=model,
        champion=entry(found["champion"]),
        challenger=entry(found["challenger"]),
        decisions=found["decisions"],
        costs=found["costs"],
        erased=found.get("erased") or None,
    )


def status_entry(entry: dict[str, Any]) -> AliasStatus:
    """What `status` shows of an aliased version, from either registry read."""
    from tasks.registry.lineage import batches_seen, judged_on

    return AliasStatus(
        version=entry["version"],
        run_id=entry["run_id"],
        metrics=entry["metrics"],
        batches=entry["tags"].get("perennial.batches", ""),
        trained_on=batches_seen(entry["tags"]),
        judged_on=judged_on(entry["tags"]),
    )


def registry_status_by_mlflow(cfg: PerennialConfig) -> dict[str, Any]:
    from tasks.registry.champion import recent_decisions
    from tasks.registry.client import CHALLENGER, CHAMPION, version_by_alias
    from tasks.registry.cost import recent_costs

    found: dict[str, Any] = {}
    for alias in (CHAMPION, CHALLENGER):
        info = version_by_alias(cfg, alias)
        found[alias] = None if info is None else vars(info)
    found["decisions"] = recent_decisions(cfg)
    found["costs"] = recent_costs(cfg)
    from tasks.registry.erasure_marks import erased_versions

    found["erased"] = erased_versions(cfg)
    return found


@app.command()
def status(config: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Show the champion and challenger, their holdout metrics, and the latest decisions."""
    from tasks.core.metrics import metric

    cfg = runner.read_config(config)
    found = registry_status(cfg)
    judge = metric(cfg.primary_metric)
    lines = [f"model {found.model}"]
    for alias, entry in (("champion", found.champion), ("challenger", found.challenger)):
        if entry is None:
            lines.append(f"  {alias}: none")
            continue
        value = entry.metrics.get(f"holdout_{judge.name}")
        lines.append(
            f"  {alias}: v{entry.version} holdout {judge.title} "
            f"{judge.show(value, cfg.target.unit)}"
            if value is not None
            else f"  {alias}: v{entry.version}"
        )
        seen = entry.trained_on
        if seen:
            lines.append(
                f"    trained on {seen[0]}..{seen[-1]} ({len(seen)} batches), judged on "
                f"{entry.judged_on}"
                + (" (then refit on it)" if entry.judged_on in seen else " (unseen)")
            )
    for item in found.decisions:
        lines.append(f"  v{item['version']} {item['decision']}: {'; '.join(item['reasons'])}")
    if found.costs:
        lines.append(f"  cost of the last training runs (prices of {cfg.cost.prices_as_of}):")
    for run in found.costs:
        version = f"v{run['version']}" if run.get("version") else run["run_id"][:8]
        lines.append(
            f"    {version}: {run.get('wall_seconds', 0):.1f} s wall, "
            f"{run.get('cpu_seconds', 0):.1f} CPU s, peak {run.get('peak_rss_mb', 0):,.0f} MB, "
            f"estimated ${run.get('usd', 0):.6f}"
        )
    for item in found.erased or []:
        when = ", ".join(f"{e['at']} ({','.join(e['batches'])})" for e in item["erasures"])
        lines.append(f"  v{item['version']} was trained on erased rows: {when}; retrain")
    runner.emit(found, as_json, "\n".join(lines))
