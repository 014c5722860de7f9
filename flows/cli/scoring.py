"""`perennial predict` and `serve`: scoring with the champion, a batch at a time or over HTTP."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app


@app.command()
def predict(
    batch: str = typer.Option(..., "--batch", "-b", help="Batch to score."),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="Add each row's top three reasons (SHAP values in the model's margin: "
        "log-odds, the value, or the chosen class's).",
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Score a batch with the champion (and the challenger, in shadow) after the gate."""
    from flows.inference import inference

    cfg = runner.read_config(config)
    result = runner.run(
        inference,
        batch=runner.checked_batch(cfg, batch),
        **runner.dataset_parameters(cfg),
        explain=explain,
    )
    lines = [f"batch {batch}: {result.rows} rows scored -> {result.key}"]
    if explain:
        lines.append("  with the champion's top three reasons per row (reason_1..3 columns)")
    mean = {"binary": "mean score", "regression": "mean value"}.get(
        cfg.target.task, f"mean probability of {(cfg.target.classes or ['?'])[0]}"
    )
    for alias, scored_by in (("champion", result.champion), ("challenger", result.challenger)):
        if scored_by is not None:
            lines.append(f"  {alias} v{scored_by.version}: {mean} {scored_by.mean_score:.4f}")
    runner.emit(result, as_json, "\n".join(lines))


@app.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind (loopback only by default; any other needs PERENNIAL_SERVE_TOKEN).",
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on."),
    config: Path | None = ConfigOption,
) -> None:
    """Serve the champion over HTTP (POST /predict, /health, /version, /metrics); the challenger
    scores `serve.challenger_share` of requests. A moved alias is loaded, warmed up and swapped
    in without dropping a request."""
    from flows.serve import run

    run(runner.read_config(config), host, port)
