"""`perennial forget`: a subject's rows erased from every stored copy of a dataset, with an audit
entry that holds no values (tasks/data/erasure.py); the model versions trained on those rows are
tagged, and `perennial status` lists them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flows.cli import runner
from flows.cli.app import ConfigOption, JsonOption, app

if TYPE_CHECKING:
    from tasks.core.config import PerennialConfig
    from tasks.data.erasure import Erasure


@app.command()
def forget(
    where: str = typer.Option(
        ...,
        "--where",
        help="Which rows are the subject's, e.g. \"customer_id == 'C-1042'\" (comparisons, in "
        "lists, & | ~; a hashed column's constants are hashed with its key).",
    ),
    reason: str = typer.Option(
        ..., "--reason", help="Why (e.g. the request's reference); kept in the audit log."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset name (configs/NAME.yaml); or give --config."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would change; change nothing."
    ),
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Erase a subject's rows from every stored copy (landing revisions, quarantine, validated,
    predictions, live samples); resumes an interrupted erasure when run again."""
    if not reason.strip():
        runner.fail("give --reason: why these rows are erased (kept in the audit log)", 2)
    cfg = _dataset(dataset, config)
    from tasks.core.storage import open_storage
    from tasks.data.erasure import finish
    from tasks.data.erasure import forget as erase
    from tasks.data.subject import Subject

    storage = open_storage(cfg.home)
    erasure = erase(storage, cfg, Subject(cfg, where), reason.strip(), dry_run)
    if not dry_run and erasure.files:
        erasure.models = _mark_models(cfg, erasure)
    audit = finish(storage, cfg, erasure) if not dry_run and erasure.files else None
    runner.emit(erasure, as_json, _summary(cfg, erasure, audit))


def _dataset(dataset: str | None, config: Path | None) -> PerennialConfig:
    if config is not None or dataset is None:
        cfg = runner.read_config(config)
        if dataset is not None and dataset != cfg.dataset:
            runner.fail(f"--dataset {dataset} but {config} is dataset {cfg.dataset}: give one", 2)
        return cfg
    from tasks.core.config import dataset_config

    return dataset_config(dataset, Path.cwd() / "configs" if Path("configs").is_dir() else None)


def _mark_models(cfg: PerennialConfig, erasure: Erasure) -> list[str]:
    """Tag the model versions trained on the erased batches (none without a registry yet)."""
    if cfg.mlflow_uri is None and not (Path(cfg.home) / "mlflow.db").exists():
        return []
    from tasks.registry.erasure_marks import mark_trained_on

    return mark_trained_on(cfg, erasure.batches, erasure.id, erasure.started_at)


def _summary(cfg: PerennialConfig, erasure: Erasure, audit: str | None) -> str:
    rows = ", ".join(f"{count} in {copy}" for copy, count in erasure.rows.items())
    if not erasure.files:
        return f"{cfg.dataset}: no stored row matches; nothing to erase"
    verb = "would erase" if erasure.dry_run else "erased"
    lines = [f"{cfg.dataset}: {verb} the subject's rows ({rows}) in {len(erasure.files)} files"]
    lines += [f"  {f.copy:<11} {f.key}: {f.rows} rows, {f.action}" for f in erasure.files]
    if erasure.models:
        lines.append(f"  model versions trained on them, tagged: v{', v'.join(erasure.models)}")
    if audit:
        lines.append(f"  audit entry: {audit}")
    return "\n".join(lines)
