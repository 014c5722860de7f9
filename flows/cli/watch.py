"""`perennial monitor` and `report`: drift and performance of the champion on a batch, and the
model's report page."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app

if TYPE_CHECKING:
    from tasks.serve.predict import ShadowReport
    from tasks.watch.arms import ArmsReport
    from tasks.watch.estimate import Estimate


@app.command()
def monitor(
    batch: str = typer.Option(..., "--batch", "-b", help="Batch to check, e.g. 2013-07."),
    live: bool = typer.Option(
        False, "--live", help="Check the live traffic `perennial serve` sampled in this period."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Measure a batch's drift against the champion's training data (PSI per feature, scores,
    labels); on alert emit `perennial.drift.detected`. Drift exits 0: it is information.
    With --live, the batch is the live traffic served in that period (serve.live_sample_rate)."""
    from flows.monitoring import (
        LiveMonitoringSummary,
        MonitoringSummary,
        live_monitoring,
        monitoring,
    )
    from tasks.watch.live import LiveError
    from tasks.watch.profile import DriftError

    cfg = runner.read_config(config)
    parameters: dict[str, Any] = {
        "batch": runner.checked_batch(cfg, batch),
        **runner.dataset_parameters(cfg),
    }
    try:
        result: MonitoringSummary | LiveMonitoringSummary = (
            runner.run(live_monitoring, **parameters)
            if live
            else runner.run(monitoring, **parameters)
        )
    except (DriftError, LiveError) as exc:  # e.g. a champion trained before profiles existed
        runner.fail(f"rejected: {exc}")
    lines = [
        f"batch {batch} vs champion v{result.reference_version}: {result.status.upper()} "
        f"(max PSI {result.max_psi:.3f})",
        *(f"  - {reason}" for reason in result.reasons),
    ]
    if live:
        lines.insert(0, f"live traffic sampled by perennial serve: {result.rows:,} rows")
    label = result.label
    if label:
        lines.append(
            f"  label {label.statistic} {label.batch_rate:.4g} vs {label.reference_rate:.4g} "
            f"in the reference ({label.shift:+.4g})"
        )
    if result.estimated:
        lines.append(_estimate_line(result.estimated))
    if result.fairness:
        from tasks.registry.fairness import gaps_text

        lines.append(f"  fairness on the labelled rows: {gaps_text(result.fairness['gaps'])}")
    if result.event_emitted:
        lines.append("  event perennial.drift.detected emitted (a served deployment retrains)")
    if isinstance(result, MonitoringSummary):
        lines.extend(_shadow_lines(result.shadow))
        lines.extend(arms_lines(result.arms))
        if result.report:
            lines.append(f"report over time: {result.report.location}")
    runner.emit(result, as_json, "\n".join(lines))


def _estimate_line(estimated: Estimate) -> str:
    """The champion's metric estimated before labels, said to be an estimate, with how far to
    trust it and, once labels are in, the real value beside it; or why there is no number."""
    from tasks.watch.estimate import estimate_text

    return "  " + estimate_text(estimated)


def _shadow_lines(shadow: ShadowReport | None) -> list[str]:
    """Challenger against champion on the batch both scored, once its labels are in."""
    if not shadow or not (shadow.champion and shadow.challenger and shadow.gain):
        return []
    challenger, champion = shadow.challenger, shadow.champion
    return [
        f"shadow scoring on {shadow.rows:,} labelled rows: challenger "
        f"v{challenger.version} AUC {challenger.roc_auc:.4f} vs "
        f"champion v{champion.version} {champion.roc_auc:.4f} ({shadow.gain.roc_auc:+.4f})"
    ]


def arms_lines(arms: ArmsReport | None) -> list[str]:
    """The A/B arms of the batch's live traffic, one line each (the policy decides promotion)."""
    from tasks.core.metrics import METRICS
    from tasks.watch.task_metrics import shown

    if not arms:
        return []
    lines = [f"A/B arms on {arms.rows:,} labelled live rows:"]
    for alias, arm in (("champion", arms.champion), ("challenger", arms.challenger)):
        if arm:
            versions = ", ".join(f"v{v}" for v in arm.versions)
            title = METRICS[arm.metric].title
            lines.append(f"  {alias} {versions}: {arm.rows:,} rows, {title} {shown(arm.value)}")
    return lines


@app.command()
def report(
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Also copy the page here (default: only reports/<model>.html)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Write one self-contained HTML page of the model (metrics per batch with champion changes,
    decisions, drift heat map, quarantines, cost per run) that opens offline; print its path."""
    from flows.report import report as report_flow

    cfg = runner.read_config(config)
    result = runner.run(report_flow, **runner.dataset_parameters(cfg))
    if out is not None:
        from dataclasses import replace

        from tasks.core.storage import open_storage

        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(open_storage(cfg.home).read_bytes(result.key))
        except OSError as exc:
            runner.fail(
                f"refused: cannot write the report to {out}: {exc.strerror}; choose another --out"
            )
        result = replace(result, path=str(out.resolve()), location=out.resolve().as_uri())
    human = (
        f"report of {result.model}: {result.batches} batches, {result.decisions} "
        f"decisions, {result.quarantines} quarantined, {result.costs} runs costed\n" + result.path
    )
    runner.emit(result, as_json, human)
