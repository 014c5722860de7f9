"""The model card: one markdown page per registered version, logged to its MLflow run and shown
as a Prefect artifact. It says what data made the model, how it was validated and searched,
how it compares with the champion it faced, and what was decided and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tasks.core.config import PerennialConfig
from tasks.core.metrics import metric
from tasks.learn.model import SEARCH_TITLES, search_metric
from tasks.registry.cost import RunCost
from tasks.registry.evaluate import Comparison
from tasks.registry.holdout import Metrics
from tasks.registry.slices import slice_key

METRIC_ROWS = ("roc_auc", "log_loss", "worst_slice_auc", "mean_prediction", "label_rate", "rows")


def metric_rows(challenger: Metrics) -> list[str]:
    """The holdout table's rows: a binary model's as always, another task's every number."""
    if challenger.task == "binary":
        return list(METRIC_ROWS)
    record = challenger.as_dict()
    return [k for k, v in record.items() if isinstance(v, (int, float)) and k != "finite"]


@dataclass
class CardFacts:
    version: str
    batches: list[str]
    holdout: str
    validation: str
    batch_hashes: dict[str, str]
    rows_fit: int
    rows_holdout: int
    gate: dict[str, str]  # batch -> gate headline
    study: str
    trials_total: int
    trials_pruned: int
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    best_rounds: int
    champion_version: str | None
    top_features: list[tuple[str, float]]
    shap_importance: list[tuple[str, float]] = field(default_factory=list)  # mean |SHAP|
    shap_rows: int = 0  # holdout rows behind shap_importance
    cost: RunCost | None = None  # what the run cost up to registration (tasks/registry/cost.py)
    trained_on: list[str] = field(default_factory=list)  # batches the registered model saw
    rows_served: int = 0  # its labelled rows
    served_rounds: int = 0  # its boosting rounds


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def served_lines(facts: CardFacts) -> list[str]:
    """Which batches judged the recipe and which the registered model itself saw."""
    judged = (
        f"- judged on holdout {facts.holdout} ({facts.rows_holdout} rows) as trained on "
        f"{facts.batches[0]} to {facts.validation} ({facts.rows_fit} labelled rows), unseen"
    )
    if facts.trained_on and facts.trained_on[-1] == facts.holdout:
        return [
            f"- **the registered model is trained on {facts.trained_on[0]} to "
            f"{facts.trained_on[-1]}** ({facts.rows_served} labelled rows, "
            f"{facts.served_rounds} rounds): the judged recipe refit on its holdout too",
            judged,
        ]
    return [judged.replace("- judged", "- trained and judged")]


def render(config: PerennialConfig, facts: CardFacts, comparison: Comparison) -> str:
    decision = comparison.decision
    verdict = "**promoted to champion**" if decision.promote else "**not promoted**"
    against = f"v{facts.champion_version}" if facts.champion_version else "no champion"
    lines = [
        f"# Model card: {config.model_name} v{facts.version}",
        "",
        f"Decision: {verdict} (compared with {against} on holdout {facts.holdout}).",
        "",
        *[f"- {reason}" for reason in decision.reasons],
        "",
        "## Data",
        *served_lines(facts),
        f"- config fingerprint `{config.fingerprint()}`, seed {config.hpo.seed}",
        "",
        "| batch | sha256 | gate |",
        "|---|---|---|",
        *[
            f"| {b} | `{facts.batch_hashes.get(b, '')[:16]}` | {facts.gate.get(b, '-')} |"
            for b in facts.batches
        ],
        "",
        "## Search",
        f"- Optuna study `{facts.study}`: {facts.trials_total} trials, {facts.trials_pruned} "
        f"pruned; best #{facts.best_trial}, validation "
        f"{SEARCH_TITLES[search_metric(config)]} {facts.best_value:.4f} on "
        f"{facts.validation}, {facts.best_rounds} boosting rounds",
        f"- parameters: `{json.dumps(facts.best_params, default=float)}`",
        "",
        f"## Holdout {facts.holdout}: challenger vs champion",
        f"| metric | v{facts.version} | {against} |",
        "|---|---|---|",
    ]
    for key in metric_rows(comparison.challenger):
        theirs = comparison.champion.as_dict().get(key) if comparison.champion else None
        ours = comparison.challenger.as_dict().get(key)
        lines.append(f"| {key} | {_number(ours)} | {_number(theirs)} |")
    if decision.interval:
        low, high = decision.interval
        title = metric(config.primary_metric).title
        lines += ["", f"Paired bootstrap interval of the {title} gain: [{low:+.4f}, {high:+.4f}]"]
    key = slice_key(config.target.task, config.primary_metric)
    lines += (
        _slice_lines(comparison, against)
        if key == "auc"
        else _task_slice_lines(comparison, against, key)
    )
    if facts.shap_importance:
        lines += [
            "",
            f"## Top features (mean |SHAP| on {facts.shap_rows} holdout rows, log-odds)",
            "| feature | mean abs SHAP |",
            "|---|---|",
            *[f"| {name} | {value:.4f} |" for name, value in facts.shap_importance],
            "",
            "Plot and full table: `explain/` in the version's MLflow run.",
        ]
    lines += ["", "## Top features (XGBoost gain)", "| feature | gain |", "|---|---|"]
    lines += [f"| {name} | {gain:.1f} |" for name, gain in facts.top_features]
    if facts.cost:
        lines += ["", "## Cost of this run", f"- {facts.cost.card_line(config.cost)}"]
    return "\n".join(lines) + "\n"


def _slice_lines(comparison: Comparison, against: str) -> list[str]:
    """Per slice: the challenger's AUC, positive rate, mean score, ECE and rows, beside the
    champion's AUC; worst AUC first (one-class slices, with no AUC, last)."""
    if not comparison.slice_metrics:
        return []
    theirs = {row["slice"]: row["champion_auc"] for row in comparison.slices}
    ordered = sorted(
        comparison.slice_metrics,
        key=lambda row: (row["auc"] != row["auc"], row["auc"]),  # NaN last
    )
    return [
        "",
        f"## Slices (best minus worst AUC: {_number(comparison.slice_gap)})",
        f"| slice | rows | positive rate | mean score | ECE | AUC | {against} AUC |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {row['slice']} | {row['rows']} | {_number(row['positive_rate'])} | "
            f"{_number(row['mean_score'])} | {_number(row['ece'])} | {_number(row['auc'])} | "
            f"{_number(theirs.get(row['slice']))} |"
            for row in ordered
        ],
    ]


def _task_slice_lines(comparison: Comparison, against: str, key: str) -> list[str]:
    """Per slice of a multiclass or regression model: its rows and primary metric beside the
    champion's, worst first."""
    if not comparison.slice_metrics:
        return []
    judge = metric(key)
    theirs = {row["slice"]: row[f"champion_{key}"] for row in comparison.slices}
    ordered = sorted(
        comparison.slice_metrics,
        key=lambda row: (row[key] != row[key], row[key] if judge.higher_is_better else -row[key]),
    )
    return [
        "",
        f"## Slices (best minus worst {judge.title}: {_number(comparison.slice_gap)})",
        f"| slice | rows | {judge.title} | {against} {judge.title} |",
        "|---|---|---|---|",
        *[
            f"| {row['slice']} | {row['rows']} | {_number(row[key])} | "
            f"{_number(theirs.get(row['slice']))} |"
            for row in ordered
        ],
    ]
