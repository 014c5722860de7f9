"""Draft a dataset YAML from a sample of the user's file (`perennial init --from FILE`).

The draft is for a person to review, never used blind: it lists the columns as numeric or
categorical features, guesses the time column and the batch period, leaves the time zone at UTC
with a note to set it, and leaves the target commented out (what to predict cannot be guessed),
with the columns that could be one. Given the target column (`--target`), it writes the target
with the task its values suggest and leaves the column out of the features, so the draft loads as
written. The task proposed from a column's values (`propose_target`): two values -> binary, with
an expression naming the rarer one; a few text labels -> multiclass, with those classes; a number
with more than two values -> regression. Columns that may leak a candidate target are flagged
beside them. Everything else takes the config model's defaults.

How leaks are guessed (heuristics: a flag asks for a look, it proves nothing). A candidate
target is a column with 2 to 10 distinct values, or whose name says target/label/outcome. For
each one, every other column's association with it is measured as the uncertainty coefficient
U(target | column): the share of the target's entropy the column explains (numeric columns in
ten quantile bins). A column is flagged when it is a near copy (U >= 0.8), when it stands out
(U >= 0.15 and at least 1.5 times the next-best column's: one column that explains the target
far better than all others is often measured with or after it, as precipitation is with the
day's weather), or when it shares a name stem with the target (`dep_delay` beside `arr_delay`).
A column whose name says it is known after the fact (`actual_`, `final_`, `outcome`) is flagged
whatever the target.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tasks.core.batches import parse_times
from tasks.core.config import DATASET_NAME
from tasks.core.config_drift import DriftConfig
from tasks.core.config_promotion import PromotionConfig
from tasks.core.config_training import HpoConfig, SplitConfig
from tasks.data.draft_target import MAX_CLASSES, DraftError, propose_target, target_lines
from tasks.data.raw_files import IngestError, raw_extension

SAMPLE_ROWS = 20_000  # rows read from the top of the file
MAX_CATEGORIES = 50  # a text column with more distinct values is free text or an id: left out
TARGET_MAX_VALUES = 10  # a candidate target has 2 to this many distinct values
TIME_SHARE = 0.95  # share of a column's values that must parse as times
NEAR_COPY = 0.8  # U(target | column) of a near copy
STANDS_OUT, STANDS_OUT_FLOOR = 1.5, 0.15  # ratio to the next-best column, and the least U
QUANTILE_BINS = 10
TARGET_WORDS = {"target", "label", "outcome", "class", "churn", "fraud", "default", "late"}
POST_OUTCOME_WORDS = {"actual", "after", "post", "final", "outcome", "result", "resolved"}
GENERIC_WORDS = {"id", "date", "time", "day", "the", "num", "count", "value", "type"}


@dataclass
class ColumnPlan:
    """What the draft does with each column of the sample."""

    time: str | None = None
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # column -> why
    targets: dict[str, list[str]] = field(default_factory=dict)  # candidate -> top values
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)  # candidate -> target
    leaks: dict[str, list[str]] = field(default_factory=dict)  # column -> why it may leak


def read_sample(path: Path) -> pd.DataFrame:
    """The first `SAMPLE_ROWS` rows of a CSV (plain, .gz, .zip) or Parquet file."""
    if not path.is_file():
        raise DraftError(f"{path}: file not found")
    try:
        ext = raw_extension(path.name)
    except IngestError as exc:
        raise DraftError(str(exc)) from None
    try:
        if ext == ".parquet":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(path).iter_batches(batch_size=SAMPLE_ROWS)
            frame = next(batches).to_pandas()
        else:
            frame = pd.read_csv(path, nrows=SAMPLE_ROWS)
    except (ValueError, OSError, StopIteration) as exc:  # parser, decoding, pyarrow errors
        raise DraftError(f"{path}: cannot read it as {ext}: {str(exc)[:200]}") from None
    if frame.empty or len(frame.columns) < 2:
        raise DraftError(f"{path}: needs rows and at least two columns (a time and a feature)")
    return frame


def words(name: str) -> set[str]:
    """Lower-case words of a column name (`arr_delay`, `ArrDelay` -> {arr, delay})."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return {w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w}


def time_column(frame: pd.DataFrame) -> tuple[str | None, pd.Series | None]:
    """The column whose values parse as times (as the gate parses them), preferring one whose
    name says date or time."""
    found: list[tuple[bool, str, pd.Series]] = []
    for column in frame.columns:
        values = frame[column].dropna()
        if values.empty or pd.api.types.is_numeric_dtype(values.dtype):
            continue  # numbers parse as years or epochs: never guessed as times
        parsed = parse_times(values, "UTC")
        if parsed.notna().mean() >= TIME_SHARE:
            named = bool(words(str(column)) & {"date", "time", "timestamp", "ts", "day"})
            found.append((named, str(column), parsed))
    if not found:
        return None, None
    found.sort(key=lambda item: not item[0])
    return found[0][1], found[0][2]


def batch_period(times: pd.Series) -> tuple[str, str]:
    """The period and why: data spanning a year or more -> month, 8 weeks or more -> week,
    less -> day (batches then hold enough rows to be validated and trained on)."""
    span = times.max() - times.min()
    days = span.days if not pd.isna(span) else 0
    if days >= 365:
        return "month", f"the sample spans {days} days"
    if days >= 56:
        return "week", f"the sample spans {days} days"
    return "day", f"the sample spans {days} days"


def association(target: pd.Series, column: pd.Series) -> float:
    """Uncertainty coefficient U(target | column), 0 (no information) to 1 (a copy)."""
    pair = pd.DataFrame({"t": target.astype("string"), "c": column}).dropna()
    if len(pair) < 20:
        return 0.0
    values = pair["c"]
    if pd.api.types.is_numeric_dtype(values.dtype) and values.nunique() > QUANTILE_BINS:
        groups = pd.qcut(values, QUANTILE_BINS, labels=False, duplicates="drop")
    else:
        groups = values.astype("string")
    whole = _entropy(pair["t"])
    if whole == 0:
        return 0.0
    left = sum(len(part) / len(pair) * _entropy(part) for _, part in pair["t"].groupby(groups))
    return max(0.0, (whole - left) / whole)


def _entropy(values: pd.Series) -> float:
    shares = values.value_counts(normalize=True).to_numpy()
    return float(-(shares * np.log(shares)).sum())


def plan_columns(frame: pd.DataFrame, target: str | None = None) -> ColumnPlan:
    """What the draft does with each column; `target`, the column to predict, is left out of
    the features (and is the one candidate target)."""
    plan = ColumnPlan()
    plan.time, _ = time_column(frame)
    for column in map(str, frame.columns):
        values = frame[column]
        distinct = values.nunique(dropna=True)
        if column == plan.time:
            continue
        if column == target:
            plan.targets[column] = [str(v) for v in values.value_counts().index[:MAX_CLASSES]]
            continue
        if distinct <= 1:
            plan.left_out[column] = "constant or empty in the sample"
        elif pd.api.types.is_numeric_dtype(values.dtype):
            integers = pd.api.types.is_integer_dtype(values.dtype)
            if integers and distinct == len(values) and len(values) > TARGET_MAX_VALUES:
                plan.left_out[column] = "a distinct integer per row: an id"
            else:
                plan.numeric.append(column)
        elif distinct > MAX_CATEGORIES:
            plan.left_out[column] = f"text with {distinct} distinct values: free text or an id"
        else:
            plan.categorical.append(column)
        if column in plan.numeric + plan.categorical and (
            distinct <= TARGET_MAX_VALUES or words(column) & TARGET_WORDS
        ):
            plan.targets[column] = [str(v) for v in values.value_counts().index[:TARGET_MAX_VALUES]]
            with contextlib.suppress(DraftError):
                plan.proposals[column] = propose_target(frame, column)
    plan.leaks = leak_flags(frame, plan)
    return plan


def leak_flags(frame: pd.DataFrame, plan: ColumnPlan) -> dict[str, list[str]]:
    """Why each feature column may leak a candidate target (see the module's docstring)."""
    features = plan.numeric + plan.categorical
    flags: dict[str, list[str]] = {}
    for column in features:
        if words(column) & POST_OUTCOME_WORDS:
            flags.setdefault(column, []).append("its name says it is known after the fact")
    for target in plan.targets:
        others = [c for c in features if c != target]
        scores = {c: association(frame[target], frame[c]) for c in others}
        ranked = sorted(scores.items(), key=lambda item: -item[1])
        for position, (column, score) in enumerate(ranked):
            runner_up = ranked[1][1] if len(ranked) > 1 else 0.0
            if score >= NEAR_COPY:
                why = f"near copy of candidate target {target} (explains {score:.0%} of it)"
            elif (
                position == 0
                and score >= STANDS_OUT_FLOOR
                and score >= STANDS_OUT * max(runner_up, 1e-9)
            ):
                ratio = score / runner_up if runner_up > 0 else math.inf
                why = (
                    f"explains {score:.0%} of candidate target {target}, {ratio:.1f}x any other "
                    "column: check it is known before the target"
                )
            elif stems := (words(column) & words(target)) - GENERIC_WORDS:
                why = f"shares the name stem {sorted(stems)[0]!r} with candidate target {target}"
            else:
                continue
            flags.setdefault(column, []).append(why)
    return flags


def draft_yaml(
    frame: pd.DataFrame, name: str, source: Path, out: Path, target: str | None = None
) -> str:
    """The YAML text of the draft (comments say what to review); with `target`, the target
    section proposed for that column."""
    chosen = propose_target(frame, target) if target is not None else None
    plan = plan_columns(frame, target)
    base = out.parent.parent if out.parent.name == "configs" else out.parent
    ext = raw_extension(source.name)
    template = os.path.relpath(source.resolve().parent / f"{{batch}}{ext}", out.parent.resolve())
    lines = [
        f"# Drafted by `perennial init --from {source.name}` from its first {len(frame):,} rows.",
        "# Review every line; the target is yours to set (see below). Relative paths are",
        "# relative to this file.",
        f"dataset: {name}",
        f"home: {_relative(base / '.perennial', out)}",
        f"format: {'parquet' if ext == '.parquet' else 'csv'}",
        "",
        "source:                      # where each batch's file arrives, named by its batch id",
        "  kind: files                # (`perennial ingest --folder DIR` lands a whole folder)",
        f"  path_template: {_quoted(template)}",
        "",
    ]
    lines += _time_lines(frame, plan)
    lines += target_lines(plan.targets, plan.proposals, chosen)
    lines += _feature_lines(frame, plan)
    batch_rows = _rows_per_batch(frame, plan)
    drift = DriftConfig.model_validate({}).model_dump(mode="json")
    if batch_rows is not None and batch_rows < drift["min_rows"]:
        drift["min_rows"] = max(1, batch_rows // 2)
    defaults = {
        "split": SplitConfig.model_validate({}).model_dump(mode="json"),
        "promotion": PromotionConfig.model_validate({}).model_dump(mode="json"),
        "hpo": HpoConfig.model_validate({}).model_dump(mode="json", exclude={"search_space"}),
    }
    lines += [
        "",
        "# Defaults of the config model (tasks/core/config_*.py): tune them once it trains.",
    ]
    lines += [yaml.safe_dump(defaults, sort_keys=False, default_flow_style=None).rstrip()]
    lines += [
        "",
        "validation:",
        f"  suite: {name}                # drafted by `perennial validate --profile A..B`",
        f"  gx_root: {_relative(base / 'great_expectations', out)}",
        "  min_rows: 1",
        "",
        "drift:" + (f"  # about {batch_rows} rows a batch" if batch_rows else ""),
    ]
    lines += [f"  {key}: {value}" for key, value in drift.items() if key != "exclude"]
    return "\n".join(lines) + "\n"


def _time_lines(frame: pd.DataFrame, plan: ColumnPlan) -> list[str]:
    if plan.time is None:
        return [
            "time:",
            "  column: SET-ME   # no column parsed as ISO dates/times: name the time column",
            "  batch_period: month",
            "  timezone: UTC",
            "",
        ]
    times = parse_times(frame[plan.time], "UTC")
    period, why = batch_period(times.dropna())
    return [
        "time:",
        f"  column: {_quoted(plan.time)}",
        f"  batch_period: {period}          # {why}",
        "  timezone: UTC              # SET ME: the zone of times written without an offset",
        "                             # (e.g. America/Los_Angeles): periods begin and end there",
        "",
    ]


def _feature_lines(frame: pd.DataFrame, plan: ColumnPlan) -> list[str]:
    # One column a line, in a flow list with trailing commas: deleting any line (even the last
    # of a list) leaves valid YAML, and each line carries its own flags.
    lines = ["features:"]
    for kind, columns in (("numeric", plan.numeric), ("categorical", plan.categorical)):
        lines.append(f"  {kind}: [")
        for column in columns:
            notes = [f"LEAK? {why}" for why in plan.leaks.get(column, [])]
            if column in plan.targets:
                notes.append("candidate target: remove it here if you predict it")
            lines.append(f"    {_quoted(column)}," + (f"   # {'; '.join(notes)}" if notes else ""))
        lines.append("  ]")
    lines.append(f"  time: [{', '.join(_time_features(frame, plan))}]   # derived in the zone")
    lines.append("  forbidden: []               # columns known only after the outcome")
    lines += [f"  # left out: {column} ({why})" for column, why in plan.left_out.items()]
    return lines


def _time_features(frame: pd.DataFrame, plan: ColumnPlan) -> list[str]:
    if plan.time is None:
        return []
    times = parse_times(frame[plan.time], "UTC").dropna()
    chosen = ["day_of_week"]
    if (times != times.dt.normalize()).any():
        chosen.insert(0, "hour")
    if batch_period(times)[0] == "month":
        chosen.append("month")
    return chosen


def _rows_per_batch(frame: pd.DataFrame, plan: ColumnPlan) -> int | None:
    if plan.time is None:
        return None
    times = parse_times(frame[plan.time], "UTC").dropna()
    period = batch_period(times)[0]
    formats = {"month": "%Y-%m", "week": "%G-W%V", "day": "%Y-%m-%d"}
    return int(len(times) / max(1, times.dt.strftime(formats[period]).nunique()))


def _relative(path: Path, out: Path) -> str:
    return _quoted(os.path.relpath(path.resolve(), out.parent.resolve()))


def _quoted(text: str) -> str:
    """A YAML scalar for a name or a path: plain when safe, else double-quoted."""
    if re.fullmatch(r"[A-Za-z0-9_./-]+", text) and not _is_number(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_draft(
    source: Path, name: str | None = None, out: Path | None = None, target: str | None = None
) -> Path:
    """Write the draft for `source` to `out` (default `configs/<name>.yaml`), with the target
    proposed for the `target` column if given; never overwrite."""
    name = name or re.sub(r"[^A-Za-z0-9_-]+", "-", source.name.split(".")[0]).strip("-_")
    if not DATASET_NAME.fullmatch(name):
        raise DraftError(f"dataset name {name[:40]!r}: use letters, digits, '-' and '_' (--name)")
    written = out or Path("configs") / f"{name}.yaml"
    if written.exists():
        raise DraftError(f"{written}: already exists; not overwritten (give --out another path)")
    text = draft_yaml(read_sample(source), name, source, written, target)
    written.parent.mkdir(parents=True, exist_ok=True)
    with written.open("x") as handle:  # "x": a file created meanwhile is not overwritten either
        handle.write(text)
    return written
