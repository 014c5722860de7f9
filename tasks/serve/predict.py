"""Predict: batch scoring with the registry's champion, and shadow scoring with its challenger.

Predictions land in `predictions/<dataset>/<batch>.parquet`, one row per input row, with the
model version in every row. Each model's answer is the columns `tasks.learn.scorer.outputs` builds
for its task, prefixed with the alias: `champion_score` (binary: the positive class's
probability), `champion_value` (regression), `champion_probability_<class>` for each class and
`champion_predicted_class` (multiclass). When a `challenger` alias exists the same rows are
scored by it too (the evidence for a later promotion); once the batch's labels arrive, the
monitor compares the two on them (`compare_shadow`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.artifacts import artifact_key
from tasks.core.config import PerennialConfig
from tasks.core.results import ABSENT_IF_NONE
from tasks.core.run_logging import run_logger
from tasks.core.storage import Storage
from tasks.data.features import features_and_label, model_inputs
from tasks.learn.explain import contributions, reason_columns, top_reasons
from tasks.learn.scorer import outputs
from tasks.registry.client import CHALLENGER, CHAMPION, RegistryError, version_by_alias
from tasks.registry.evaluate import Metrics, metrics_from
from tasks.registry.metrics import scores
from tasks.registry.model_store import load_model


@dataclass
class AliasScore:
    """Which version of an alias scored a batch, and its mean predicted probability."""

    version: str
    mean_score: float


@dataclass
class ScoringSummary:
    """What batch scoring reports: where the predictions are, and who scored them (the
    challenger, in shadow, when there is one)."""

    batch: str
    rows: int
    key: str
    explained: bool
    champion: AliasScore
    challenger: AliasScore | None = field(default=None, metadata=ABSENT_IF_NONE)


@dataclass(frozen=True, kw_only=True)
class VersionMetrics(Metrics):
    """A version's metrics on a batch's labelled rows."""

    version: str


@dataclass
class ShadowGain:
    """Challenger minus champion, per metric (a positive AUC gain and a negative log-loss gain
    mean the challenger is better)."""

    roc_auc: float
    log_loss: float
    worst_slice_auc: float


@dataclass
class ShadowReport:
    """Champion and challenger on the labelled rows of a batch both scored; `gain` once the
    comparison is made (`compare_shadow`)."""

    batch: str
    rows: int  # labelled rows
    champion: VersionMetrics | None = field(default=None, metadata=ABSENT_IF_NONE)
    challenger: VersionMetrics | None = field(default=None, metadata=ABSENT_IF_NONE)
    gain: ShadowGain | None = field(default=None, metadata=ABSENT_IF_NONE)


def score_frame(
    frame: pd.DataFrame,
    config: PerennialConfig,
    models: dict[str, tuple[str, Any]],
    explain: bool = False,
) -> pd.DataFrame:
    """The answer of every row by each model (`<alias>_<output>` columns, see the module's
    docstring) and `<alias>_version`; with `explain`, the champion's top three reasons per row
    (`reason_<k>_feature` and `reason_<k>_contribution`, SHAP values in the model's margin:
    log-odds, the value, or the chosen class's margin)."""
    x = model_inputs(frame, config)
    out = pd.DataFrame(
        {"row": np.arange(len(frame)), config.time.column: frame[config.time.column]}
    )
    for alias, (version, model) in models.items():
        answer = outputs(scores(model, x, config.target.task), config.target.task, classes(config))
        for column in answer.columns:
            out[f"{alias}_{column}"] = answer[column].to_numpy()
        out[f"{alias}_version"] = version
    if explain:
        shap = contributions(models[CHAMPION][1], config, x)
        for column, values in reason_columns(top_reasons(shap.values, shap.features)).items():
            out[column] = values
    return out


def classes(config: PerennialConfig) -> tuple[str, ...]:
    return tuple(config.target.classes or ())


def headline_column(config: PerennialConfig, alias: str) -> str:
    """The predictions' column a summary averages: the score (binary), the value (regression),
    the first class's probability (multiclass)."""
    task = config.target.task
    if task == "multiclass":
        return f"{alias}_probability_{classes(config)[0]}"
    return f"{alias}_{'value' if task == 'regression' else 'score'}"


def registry_models(config: PerennialConfig) -> dict[str, tuple[str, Any]]:
    """Champion (required) and challenger (if any), loaded from the registry by alias."""
    champion = version_by_alias(config, CHAMPION)
    if champion is None:
        raise RegistryError(f"{config.model_name} has no champion yet: train one first")
    models = {CHAMPION: (champion.version, load_model(config, champion.version))}
    challenger = version_by_alias(config, CHALLENGER)
    if challenger is not None and challenger.version != champion.version:
        models[CHALLENGER] = (challenger.version, load_model(config, challenger.version))
    return models


def shadow_report(
    storage: Storage, config: PerennialConfig, batch: str, scored: pd.DataFrame | None = None
) -> ShadowReport:
    """Champion and challenger metrics on a scored batch whose labels have arrived (`scored`:
    its predictions, when the caller has read them already)."""
    if scored is None:
        scored = storage.read_parquet(catalog.key("predictions", config, batch=batch))
    if config.target.task != "binary":  # the shadow comparison is binary's for now
        return ShadowReport(batch, 0)
    frame = storage.read_parquet(catalog.key("validated", config, batch=batch))
    labelled = frame[config.target.column].notna().to_numpy()
    x, y = features_and_label(frame, config)
    found: dict[str, VersionMetrics] = {}
    for alias in (CHAMPION, CHALLENGER):
        if f"{alias}_score" not in scored.columns:
            continue
        metrics = metrics_from(
            x,
            y,
            scored[f"{alias}_score"].to_numpy()[labelled],
            config.promotion.slices,
            config.promotion.min_slice_rows,
        )
        version = str(scored[f"{alias}_version"].iloc[0])
        found[alias] = VersionMetrics(**vars(metrics), version=version)
    return ShadowReport(batch, int(labelled.sum()), found.get(CHAMPION), found.get(CHALLENGER))


def compare_shadow(storage: Storage, config: PerennialConfig, batch: str) -> ShadowReport | None:
    """The shadow comparison of a batch, or None when there is nothing to compare: no
    predictions for it, no challenger among them, or no labels yet. `gain` is challenger minus
    champion per metric (positive AUC gain, negative log-loss gain: the challenger is better)."""
    key = catalog.key("predictions", config, batch=batch)
    if not storage.exists(key):
        return None
    scored = storage.read_parquet(key)
    if f"{CHALLENGER}_score" not in scored.columns:
        return None
    report = shadow_report(storage, config, batch, scored)
    champion, challenger = report.champion, report.challenger
    if report.rows == 0 or champion is None or challenger is None:
        return None
    report.gain = ShadowGain(
        roc_auc=challenger.roc_auc - champion.roc_auc,
        log_loss=challenger.log_loss - champion.log_loss,
        worst_slice_auc=challenger.worst_slice_auc - champion.worst_slice_auc,
    )
    return report


def shadow_markdown(report: ShadowReport, gain: ShadowGain) -> str:
    rows = [
        f"| {alias} | v{m.version} | {m.roc_auc:.4f} | {m.log_loss:.4f} | {m.worst_slice_auc:.4f} |"
        for alias, m in ((CHAMPION, report.champion), (CHALLENGER, report.challenger))
        if m is not None
    ]
    return "\n".join(
        [
            f"### Shadow scoring of {report.batch} ({report.rows:,} labelled rows)",
            "",
            "| alias | version | ROC AUC | log loss | worst slice AUC |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
            f"Challenger minus champion: ROC AUC {gain.roc_auc:+.4f}, "
            f"log loss {gain.log_loss:+.4f}.",
        ]
    )


@task(name="compare-shadow", cache_policy=NO_CACHE)
def compare_shadow_task(config: PerennialConfig, batch: str) -> ShadowReport | None:
    """Champion vs challenger on a batch both scored, once its labels are in: the evidence a
    later promotion can point to (a markdown artifact)."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.core.storage import open_storage

    report = compare_shadow(open_storage(config.home), config, batch)
    if report is not None and report.gain and report.champion and report.challenger:
        create_markdown_artifact(
            key=artifact_key(f"shadow-{config.dataset}-{batch}"),
            markdown=shadow_markdown(report, report.gain),
            description=f"shadow scoring {batch}: challenger AUC gain {report.gain.roc_auc:+.4f}",
        )
        run_logger().info(
            "shadow %s: challenger v%s minus champion v%s, ROC AUC %+.4f",
            batch,
            report.challenger.version,
            report.champion.version,
            report.gain.roc_auc,
        )
    return report


@task(name="score-batch", cache_policy=NO_CACHE)
def score_batch_task(config: PerennialConfig, batch: str, explain: bool = False) -> ScoringSummary:
    from tasks.core.storage import open_storage

    storage = open_storage(config.home)
    frame = storage.read_parquet(catalog.key("validated", config, batch=batch))
    scored = score_frame(frame, config, registry_models(config), explain)
    storage.write_parquet(catalog.key("predictions", config, batch=batch), scored)
    by = {
        alias: AliasScore(
            str(scored[f"{alias}_version"].iloc[0]),
            float(scored[headline_column(config, alias)].mean()),
        )
        for alias in (CHAMPION, CHALLENGER)
        if f"{alias}_version" in scored.columns
    }
    return ScoringSummary(
        batch=batch,
        rows=len(scored),
        key=catalog.key("predictions", config, batch=batch),
        explained=explain,
        champion=by[CHAMPION],
        challenger=by.get(CHALLENGER),
    )
