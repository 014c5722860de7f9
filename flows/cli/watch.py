"""`perennial monitor` and `report`: drift and performance of the champion on a batch, and the
model's report page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app


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
    from flows.monitoring import live_monitoring, monitoring
    from tasks.watch.live import LiveError
    from tasks.watch.profile import DriftError

    cfg = runner.read_config(config)
    try:
        result = runner.run(
            live_monitoring if live else monitoring,
            batch=runner.checked_batch(cfg, batch),
            **runner.dataset_parameters(cfg),
        )
    except (DriftError, LiveError) as exc:  # e.g. a champion trained before profiles existed
        runner.fail(f"rejected: {exc}")
    lines = [
        f"batch {batch} vs champion v{result['reference_version']}: {result['status'].upper()} "
        f"(max PSI {result['max_psi']:.3f})",
        *(f"  - {reason}" for reason in result["reasons"]),
    ]
    if live:
        lines.insert(0, f"live traffic sampled by perennial serve: {result['rows']:,} rows")
    label = result.get("label")
    if label:
        lines.append(
            f"  label positive rate {label['batch_rate']:.3f} vs {label['reference_rate']:.3f} "
            f"in the reference ({label['shift']:+.3f})"
        )
    estimated = result.get("estimated")
    if estimated:
        real = estimated["realised_auc"]
        from tasks.watch.estimate import trust_text

        lines.append(
            f"  champion AUC estimated before labels (CBPE): {estimated['estimated_auc']:.4f}"
            + trust_text(estimated)
            + (f"; real AUC {real:.4f} ({estimated['error']:+.4f})" if real is not None else "")
        )
    if result["event_emitted"]:
        lines.append("  event perennial.drift.detected emitted (a served deployment retrains)")
    shadow = result.get("shadow")
    if shadow:
        lines.append(
            f"shadow scoring on {shadow['rows']:,} labelled rows: challenger "
            f"v{shadow['challenger']['version']} AUC {shadow['challenger']['roc_auc']:.4f} vs "
            f"champion v{shadow['champion']['version']} {shadow['champion']['roc_auc']:.4f} "
            f"({shadow['gain']['roc_auc']:+.4f})"
        )
    lines.extend(arms_lines(result.get("arms")))
    if result.get("report"):
        lines.append(f"report over time: {result['report']['location']}")
    runner.emit(result, as_json, "\n".join(lines))


def arms_lines(arms: dict[str, Any] | None) -> list[str]:
    """The A/B arms of the batch's live traffic, one line each (the policy decides promotion)."""
    if not arms:
        return []
    lines = [f"A/B arms on {arms['rows']:,} labelled live rows:"]
    for alias in ("champion", "challenger"):
        if arms[alias]:
            versions = ", ".join(f"v{v}" for v in arms[alias]["versions"])
            lines.append(
                f"  {alias} {versions}: {arms[alias]['rows']:,} rows, "
                f"AUC {arms[alias]['roc_auc']:.4f}"
            )
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
        from tasks.core.storage import open_storage

        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(open_storage(cfg.home).read_bytes(result["key"]))
        except OSError as exc:
            runner.fail(
                f"refused: cannot write the report to {out}: {exc.strerror}; choose another --out"
            )
        result["path"], result["location"] = str(out.resolve()), out.resolve().as_uri()
    human = (
        f"report of {result['model']}: {result['batches']} batches, {result['decisions']} "
        f"decisions, {result['quarantines']} quarantined, {result['costs']} runs costed\n"
        + result["path"]
    )
    runner.emit(result, as_json, human)
