"""The demo: replay 2013 month by month. Land and train on the first months, then for each
later month land it, validate it, score it with the champion (batch inference, before the
month's labels are used), let the monitor judge the champion on it (recorded for the report
page, as `perennial monitor` records it, without alerting anyone) and retrain; one row a month."""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from rich.console import Console
from rich.table import Table

from flows.training import training
from tasks.core.artifacts import artifact_key
from tasks.core.batches import expand_range
from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.core.config_training import checked_trials
from tasks.core.metrics import metric
from tasks.data.validate import GateRefusedError, gate_batches_task
from tasks.registry.promotion import RerunSummary, TrainingSummary
from tasks.serve.predict import ScoringSummary, score_batch_task
from tasks.watch.drift import measure_drift_task
from tasks.watch.report import record_batch_task


def columns(title: str) -> tuple[str, ...]:
    """The table's columns; `title`: the primary metric's (AUC, RMSE, macro AUC)."""
    return (
        "month",
        "rows",
        "gate",
        "scored by",
        f"champion {title}",
        f"challenger {title}",
        "promoted",
        "champion",
        "monitor",
    )


def _scored(scoring: ScoringSummary | None) -> str:
    """Which champion scored the month before retraining, and its mean answer (probability,
    value, or the first class's probability)."""
    if scoring is None:
        return "-"
    champion = scoring.champion
    return f"v{champion.version} (mean {champion.mean_score:.3f})"


def _row(
    month: str,
    rows: int | None,
    gate: str,
    result: TrainingSummary | RerunSummary | None,
    scoring: ScoringSummary | None = None,
    monitored: str = "-",
    primary: str = "roc_auc",
) -> tuple[str, ...]:
    if result is None:
        return (month, str(rows or "-"), gate, _scored(scoring), "-", "-", "-", "-", monitored)
    champion, challenger = result.champion, result.challenger
    return (
        month,
        str(rows),
        gate,
        _scored(scoring),
        champion.shown(primary) if champion else "-",
        challenger.shown(primary) if challenger else "-",
        "yes" if result.promoted else "no",
        f"v{result.champion_version}",
        monitored,
    )


@flow(name="demo", log_prints=True)
def demo(
    trials: int | None = None,
    first: str = "2013-01..2013-03",
    last: str = "2013-12",
    dataset: str = DEFAULT_DATASET,
    configs_dir: str | None = None,
) -> list[tuple[str, ...]]:
    checked_trials(trials)
    config = dataset_config(dataset, configs_dir)
    primary = config.primary_metric
    header = columns(metric(primary).title)
    console = Console()
    opening = expand_range(first, config.time)
    later = [m for m in expand_range(f"{opening[0]}..{last}", config.time) if m not in opening]
    rows: list[tuple[str, ...]] = []
    kept: list[str] = []  # why the champion stayed, month by month

    def show(row: tuple[str, ...], result: TrainingSummary | RerunSummary | None = None) -> None:
        rows.append(row)
        if result and not result.promoted:
            blockers = result.blockers if isinstance(result, TrainingSummary) else []
            kept.append(f"{row[0]}: " + "; ".join(blockers or result.reasons))
        console.print(
            "[bold]"
            + " | ".join(f"{name}: {value}" for name, value in zip(header, row, strict=True))
        )

    console.rule(f"[bold]first champion: {first}")
    result = training(
        batches=first,
        trials=trials,
        reason="demo: first champion",
        dataset=dataset,
        configs_dir=configs_dir,
    )
    holdout_rows = result.rows.holdout if isinstance(result, TrainingSummary) else None
    show(_row(opening[-1], holdout_rows, "passed", result, primary=primary), result)
    for index, month in enumerate(later, start=1):
        console.rule(f"[bold]{month} ({index}/{len(later)})")
        gate = gate_batches_task(config, [month], "the demo", refuse=False)[month]
        if not gate.passed:
            show(_row(month, gate.rows, "quarantined", None))
            continue
        scoring = score_batch_task(config, month)  # the champion scores the month first
        monitored = "-"
        if config.target.task == "binary":  # the monitor judges binary models only, so far
            report = measure_drift_task(config, month)  # ... judged on the month's labels
            record_batch_task(config, report)
            monitored = report.status
        try:
            result = training(
                batches=f"{opening[0]}..{month}",
                trials=trials,
                reason=f"demo: {month} arrived",
                dataset=dataset,
                configs_dir=configs_dir,
            )
        except GateRefusedError as exc:  # an earlier month was quarantined
            console.print(f"[red]{exc}")
            show(_row(month, gate.rows, "passed", None, scoring, monitored, primary))
            continue
        show(_row(month, gate.rows, "passed", result, scoring, monitored, primary), result)

    table = Table(title=f"{config.model_name}: the year replayed")
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if kept:
        console.print("[bold]Champion kept[/bold] (what the challenger failed):")
        for line in kept:
            console.print(f"  {line}")
    markdown = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    markdown += "\n".join("| " + " | ".join(row) + " |" for row in rows)
    if kept:
        markdown += "\n\n**Champion kept** (what the challenger failed):\n\n"
        markdown += "\n".join(f"- {line}" for line in kept)
    create_markdown_artifact(
        markdown=markdown,
        key=artifact_key(f"{config.dataset}-demo"),
        description="Month by month: gate, champion scoring, champion vs challenger, promotion",
    )
    return rows
