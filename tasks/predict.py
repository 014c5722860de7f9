"""Predict: batch scoring with the registry's champion, and shadow scoring with its challenger.

Predictions land in `predictions/<dataset>/<batch>.parquet`, one row per input row, with the
model version in every row. When a `challenger` alias exists the same rows are scored by it too
(the evidence for a later promotion); once the batch's labels arrive, `shadow_report` compares
the two on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.config import PerennialConfig
from tasks.evaluate import metrics_from, predict
from tasks.features import features_and_label, model_inputs
from tasks.registry import CHALLENGER, CHAMPION, RegistryError, load_model, version_by_alias
from tasks.storage import Storage


def predictions_key(config: PerennialConfig, batch: str) -> str:
    return f"predictions/{config.dataset}/{batch}.parquet"


def score_frame(
    frame: pd.DataFrame, config: PerennialConfig, models: dict[str, tuple[str, Any]]
) -> pd.DataFrame:
    """Scores of every row by each model: `<alias>_score` and `<alias>_version` columns."""
    x = model_inputs(frame, config)
    out = pd.DataFrame(
        {"row": np.arange(len(frame)), config.time.column: frame[config.time.column]}
    )
    for alias, (version, model) in models.items():
        out[f"{alias}_score"] = predict(model, x)
        out[f"{alias}_version"] = version
    return out


def registry_models(config: PerennialConfig) -> dict[str, tuple[str, Any]]:
    """Champion (required) and challenger (if any), loaded from the registry by alias."""
    champion = version_by_alias(config, CHAMPION)
    if champion is None:
        raise RegistryError(f"{config.model_name} has no champion yet: train one first")
    models = {CHAMPION: (champion.version, load_model(config, CHAMPION))}
    challenger = version_by_alias(config, CHALLENGER)
    if challenger is not None and challenger.version != champion.version:
        models[CHALLENGER] = (challenger.version, load_model(config, CHALLENGER))
    return models


def shadow_report(storage: Storage, config: PerennialConfig, batch: str) -> dict[str, Any]:
    """Champion and challenger metrics on a scored batch whose labels have arrived."""
    scored = storage.read_parquet(predictions_key(config, batch))
    frame = storage.read_parquet(f"validated/{config.dataset}/{batch}.parquet")
    labelled = frame[config.target.column].notna().to_numpy()
    x, y = features_and_label(frame, config)
    report: dict[str, Any] = {"batch": batch, "rows": int(labelled.sum())}
    for alias in (CHAMPION, CHALLENGER):
        if f"{alias}_score" not in scored.columns:
            continue
        scores = scored[f"{alias}_score"].to_numpy()[labelled]
        metrics = metrics_from(
            x, y, scores, config.promotion.slices, config.promotion.min_slice_rows
        )
        report[alias] = {"version": str(scored[f"{alias}_version"].iloc[0]), **metrics.as_dict()}
    return report


@task(name="score-batch", cache_policy=NO_CACHE)
def score_batch_task(config: PerennialConfig, batch: str) -> dict[str, Any]:
    from tasks.storage import open_storage

    storage = open_storage(config.home)
    frame = storage.read_parquet(f"validated/{config.dataset}/{batch}.parquet")
    scored = score_frame(frame, config, registry_models(config))
    storage.write_parquet(predictions_key(config, batch), scored)
    summary: dict[str, Any] = {
        "batch": batch,
        "rows": len(scored),
        "key": predictions_key(config, batch),
    }
    for alias in (CHAMPION, CHALLENGER):
        if f"{alias}_version" in scored.columns:
            summary[alias] = {
                "version": str(scored[f"{alias}_version"].iloc[0]),
                "mean_score": float(scored[f"{alias}_score"].mean()),
            }
    return summary
