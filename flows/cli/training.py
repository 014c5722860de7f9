"""`perennial train`, `search`, `replay` and `demo`: training a challenger (and promoting it if it
wins), searching only, replaying the retrain policies over history, and the year replayed."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app


@app.command()
def train(
    batches: str = typer.Option(
        "",
        "--batches",
        help="Batches to use, e.g. 2013-01..2013-06 (newest = holdout); "
        "default: every landed batch.",
    ),
    trials: int | None = typer.Option(
        None, "--trials", min=1, max=10_000, help="Search trials (default: config)."
    ),
    reason: str = typer.Option(
        "manual run from the CLI", "--reason", help="Recorded with the run."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Train a challenger and promote it if it beats the champion."""
    from flows.training import training
    from tasks.core.metrics import metric

    cfg = runner.trainable(config, batches)
    result = runner.run(
        training,
        heartbeats=True,
        batches=batches,
        trials=trials,
        reason=reason,
        **runner.dataset_parameters(cfg),
    )
    verdict = "promoted to champion" if result.promoted else "not promoted"
    # An identical rerun reports the version found; its numbers may be missing (e.g. it was
    # registered by a concurrent run that had not recorded its decision yet).
    challenger, champion = result.challenger, result.champion
    primary = cfg.primary_metric
    title = metric(primary).title
    numbers = f"{title} {challenger.shown(primary)}" if challenger else f"{title} not recorded"
    if champion:
        numbers += f" vs champion {champion.shown(primary)}"
    seen = result.trained_on
    trained = f"; trained on {seen[0]}..{seen[-1]}" if seen else ""
    human = (
        f"{result.model} v{result.version} {verdict} "
        f"(holdout {result.holdout}: {numbers}{trained})\n"
        + "\n".join(f"  - {r}" for r in result.reasons)
    )
    runner.emit(result, as_json, human)


@app.command()
def search(
    batches: str = typer.Option(
        "",
        "--batches",
        help="Batches, as train takes them, e.g. 2013-01..2013-12; default: every landed batch.",
    ),
    trials: int | None = typer.Option(
        None,
        "--trials",
        min=1,
        max=10_000,
        help="Finished trials the study should hold (default: config).",
    ),
    first_worker: int | None = typer.Option(
        None,
        "--first-worker",
        min=0,
        help="Sampler seed offset of this process (default: config hpo.first_worker_index); "
        "give each process that joins a study its own: 0, 2, 4, ... with two workers each.",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Run search trials in the study `train` uses for these batches; train and register nothing.

    With a shared PostgreSQL Optuna storage (PERENNIAL_OPTUNA_STORAGE), a second machine joins
    a running search; the next `train` on the same batches runs only the trials still missing."""
    from flows.search import search as search_flow

    cfg = runner.trainable(config, batches)
    result = runner.run(
        search_flow,
        heartbeats=True,
        batches=batches,
        trials=trials,
        **runner.dataset_parameters(cfg),
        first_worker_index=first_worker,
    )
    from tasks.learn.model import SEARCH_TITLES, search_metric

    human = (
        f"study {result.study}: {result.trials_total} finished trial(s), "
        f"{result.trials_run} run here ({result.trials_pruned} pruned in all), "
        f"sampler seed(s) {', '.join(map(str, result.sampler_seeds))}; "
        f"best #{result.best_trial} validation {SEARCH_TITLES[search_metric(cfg)]} "
        f"{result.best_value:.4f}\n"
        f"  next: perennial train --batches {batches or '<the same batches>'}"
        + (f" --trials {trials}" if trials else "")
        + " runs only the trials still missing"
    )
    runner.emit(result, as_json, human)


@app.command()
def demo(
    trials: int | None = typer.Option(
        None, "--trials", min=1, max=10_000, help="Search trials per retrain."
    ),
    first: str | None = typer.Option(
        None, help="Batches that train the first champion (default: 2013-01..2013-03)."
    ),
    last: str | None = typer.Option(None, help="Last month to replay (default: 2013-12)."),
    config: Path | None = ConfigOption,
) -> None:
    """Replay the year: land and train on the first months, then month by month land, validate,
    score with the champion and retrain, printing one row a month."""
    from flows.demo import demo as demo_flow

    cfg = runner.trainable(config, first)  # without --first, the flow's default, checked there
    if last is not None:
        runner.checked_batch(cfg, last)
    runner.run(
        demo_flow,
        heartbeats=True,
        **runner.given(trials=trials, first=first, last=last),
        **runner.dataset_parameters(cfg),
    )


@app.command()
def replay(
    batches: str = typer.Option(
        "",
        "--batches",
        help="History to replay, e.g. 2013-01..2013-12 (default: every landed batch).",
    ),
    seeds: int | None = typer.Option(
        None, "--seeds", min=1, max=20, help="Seeds per policy (default: 3)."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Replay the dataset's history under the configured retrain policy and simple alternatives
    (every batch, never, every 3 batches): the realized metric (the target's: AUC, RMSE, ...) of
    the model in production per batch, retrains, promotions, alerts. The report page draws it."""
    from flows.replay import replay as replay_flow
    from tasks.core.metrics import METRICS
    from tasks.watch.task_metrics import shown

    cfg = runner.read_config(config)
    if batches:
        runner.checked_batch(cfg, batches, many=True)
    result = runner.run(
        replay_flow,
        heartbeats=True,
        batches=batches,
        **runner.given(seeds=seeds),
        **runner.dataset_parameters(cfg),
    )
    lines = [
        f"replay of {result.dataset} over {len(result.batches)} batches, {len(result.seeds)} seeds:"
    ]
    title = METRICS[result.metric].title
    for name, summary in result.policies.items():
        low, high = summary.interval
        lines.append(
            f"  {name:<12} realized {title} {shown(summary.mean_realized)} "
            f"[{shown(low)}, {shown(high)}]"
            f", {summary.retrains:g} retrains, {summary.promotions:g} promotions, "
            f"{summary.alerts:g} alerts"
        )
    runner.emit(result, as_json, "\n".join(lines))
