"""A/B arms on live traffic: once a batch's labels have landed, the live rows served during its
period are joined to them on `validation.key_columns`, and each arm (champion, challenger) is
scored on its own rows with the scores it actually served, in the target task's judged metric
(AUC, RMSE, ...; a multiclass row keeps one served score, not each class's probability, so
multiclass arms are not judged). The monitor reports; promotion stays the policy's decision (as
for shadow scoring, `tasks.serve.predict.compare_shadow`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.artifacts import artifact_key
from tasks.core.config import PerennialConfig
from tasks.core.metrics import METRICS
from tasks.core.results import ABSENT_IF_NONE
from tasks.core.storage import Storage
from tasks.data.features import label
from tasks.registry.client import CHALLENGER, CHAMPION
from tasks.watch.live import ARM, SCORE, VERSION, live_batches_within, read_live

LABEL = "_label"


@dataclass
class ArmMetrics:
    """One arm on its labelled live rows, with the scores it served: the judged `metric`'s
    `value`, and each of the task's metrics with the label's statistic and the mean score."""

    versions: list[str]  # the alias may have moved within the period
    rows: int
    metric: str
    value: float
    metrics: dict[str, float]


@dataclass
class ArmsGain:
    """How much better the challenger is than the champion in the judged metric (positive:
    better, whatever the metric's direction)."""

    metric: str
    value: float


@dataclass
class ArmsReport:
    """The A/B arms of a batch's period: how many live rows were sampled, how many have a
    label, each arm's metrics (None: it served no labelled row), and the gain when both did."""

    batch: str
    live_rows: int
    rows: int
    champion: ArmMetrics | None
    challenger: ArmMetrics | None
    gain: ArmsGain | None = field(default=None, metadata=ABSENT_IF_NONE)


def as_type_of(values: pd.Series, like: pd.Series) -> pd.Series:
    """Live key values (stored as text) in the labelled batch's type; a value that does not
    convert becomes missing, so it joins nothing rather than the wrong row."""
    if pd.api.types.is_datetime64_any_dtype(like):
        converted = pd.to_datetime(values, utc=True, errors="coerce")
        zone = getattr(like.dt, "tz", None)
        return converted.dt.tz_convert(zone) if zone is not None else converted.dt.tz_localize(None)
    if pd.api.types.is_numeric_dtype(like):
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return values.astype("string")


def join_labels(live: pd.DataFrame, frame: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    """Live rows that have a label in `frame` (a validated batch), with the label in `_label`.
    A key scored several times by one arm (a retried request) counts once, its last score."""
    keys = config.validation.key_columns
    labelled = frame[frame[config.target.column].notna()]
    right = labelled[keys].assign(**{LABEL: label(labelled, config).to_numpy()})
    right = right.drop_duplicates(subset=keys, keep="last")
    left = live.copy()
    for column in keys:
        left[column] = as_type_of(left[column], right[column])
        if pd.api.types.is_numeric_dtype(right[column]):
            right[column] = right[column].astype("float64")
        elif not pd.api.types.is_datetime64_any_dtype(right[column]):
            right[column] = right[column].astype("string")
    left = left.dropna(subset=keys).drop_duplicates(subset=[*keys, ARM], keep="last")
    return left.merge(right, on=keys, how="inner")


def arm_metrics(joined: pd.DataFrame, alias: str, config: PerennialConfig) -> ArmMetrics | None:
    from tasks.watch.task_metrics import realised_metrics

    rows = joined[joined[ARM] == alias]
    if rows.empty:
        return None
    found = realised_metrics(rows[LABEL], rows[SCORE].to_numpy(dtype="float64"), config)
    metric = config.primary_metric
    return ArmMetrics(
        versions=sorted(rows[VERSION].astype(str).unique().tolist()),
        rows=len(rows),
        metric=metric,
        value=found[metric],
        metrics={name: value for name, value in found.items() if name != "rows"},
    )


def compare_arms(storage: Storage, config: PerennialConfig, batch: str) -> ArmsReport | None:
    """Each arm's judged metric and row count on the live rows of `batch` whose labels are in,
    or None when there is nothing to compare: no key columns in the config, no labelled batch,
    no live rows for its period, none of them labelled yet, or a multiclass target."""
    keys = config.validation.key_columns
    if config.target.task == "multiclass":
        return None
    validated = catalog.key("validated", config, batch=batch)
    if not keys or not storage.exists(validated):
        return None
    parts = [read_live(storage, config, live) for live in live_batches_within(config, batch)]
    parts = [part for part in parts if not part.empty]
    if not parts:
        return None
    live = pd.concat(parts, ignore_index=True)
    if any(column not in live.columns for column in keys):
        return None  # the requests did not carry the keys: nothing to join on
    joined = join_labels(live, storage.read_parquet(validated), config)
    if joined.empty:
        return None
    champion = arm_metrics(joined, CHAMPION, config)
    challenger = arm_metrics(joined, CHALLENGER, config)
    gain = None
    if champion and challenger:
        judged = METRICS[champion.metric]
        gain = ArmsGain(champion.metric, judged.gain(challenger.value, champion.value))
    return ArmsReport(batch, len(live), len(joined), champion, challenger, gain)


def arms_markdown(report: ArmsReport) -> str:
    from tasks.watch.task_metrics import companion, shown

    arm = report.champion or report.challenger
    metric = arm.metric if arm else "roc_auc"
    title, other = METRICS[metric].title, companion(metric)
    lines = [
        f"### A/B arms on live traffic of {report.batch} "
        f"({report.rows:,} of {report.live_rows:,} sampled rows labelled)",
        "",
        f"| arm | versions | rows | {title} | {METRICS[other].title} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for alias, found in ((CHAMPION, report.champion), (CHALLENGER, report.challenger)):
        if found:
            lines.append(
                f"| {alias} | {', '.join('v' + v for v in found.versions)} | {found.rows:,} | "
                f"{shown(found.value)} | {shown(found.metrics.get(other, float('nan')))} |"
            )
    if report.gain:
        gain = shown(report.gain.value, True)
        lines += ["", f"Challenger better than champion by {gain} in {title} (negative: worse)."]
    lines += ["", "Reported only: promotion stays the policy's decision (`perennial train`)."]
    return "\n".join(lines)


@task(name="compare-arms", cache_policy=NO_CACHE)
def compare_arms_task(config: PerennialConfig, batch: str) -> ArmsReport | None:
    """The A/B arms of a labelled batch's period, as a markdown artifact too."""
    from prefect.artifacts import create_markdown_artifact

    from tasks.core.run_logging import run_logger
    from tasks.core.storage import open_storage

    report = compare_arms(open_storage(config.home), config, batch)
    if report is not None:
        create_markdown_artifact(
            key=artifact_key(f"ab-{config.dataset}-{batch}"),
            markdown=arms_markdown(report),
            description=f"A/B arms on live traffic {batch}: {report.rows} labelled rows",
        )
        run_logger().info("A/B arms %s: %s", batch, arms_markdown(report).splitlines()[0])
    return report
