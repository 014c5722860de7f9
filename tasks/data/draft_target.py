"""The target a draft proposes (`perennial init --from FILE --target COLUMN`): the task from the
column's values. Two values -> binary, with an expression naming the rarer one (the positive
class: late, churned, fraud); a few text labels -> multiclass, with those classes in order of
frequency; a number with more than two values -> regression, the label being the value. A text
column with more than `MAX_CLASSES` values is refused: an id or free text, not a class label.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pandas as pd

MAX_CLASSES = 10  # a text target with more distinct values is not a class label


class DraftError(ValueError):
    """A file that cannot be drafted from, or a draft that would overwrite a file."""


def propose_target(frame: pd.DataFrame, column: str) -> dict[str, Any]:
    """The target section for `column`, its task proposed from the values (module docstring)."""
    if column not in frame.columns:
        raise DraftError(f"target column {column!r} is not in the file: choose one of its columns")
    values = frame[column].dropna()
    counts = values.astype(str).value_counts()
    slug = re.sub(r"[^a-z0-9]+", "-", column.lower()).strip("-")[:40] or "target"
    if len(counts) < 2:
        raise DraftError(f"target column {column!r} holds {len(counts)} value(s): nothing to learn")
    if len(counts) == 2:
        rarer = str(counts.index[-1])
        literal = rarer if _is_number(rarer) else "'" + rarer.replace("'", "") + "'"
        value_slug = re.sub(r"[^a-z0-9]+", "-", rarer.lower()).strip("-")[:20]
        return {
            "name": f"{slug}-{value_slug}".strip("-"),
            "column": column,
            "task": "binary",
            "expression": f"{column} == {literal}",
        }
    if pd.api.types.is_numeric_dtype(values.dtype):
        return {"name": slug, "column": column, "task": "regression"}
    if len(counts) > MAX_CLASSES:
        raise DraftError(
            f"target column {column!r} holds {len(counts)} distinct text values, more than "
            f"{MAX_CLASSES} classes: choose a column of a number, or of a few labels"
        )
    classes = [str(v) for v in counts.index]
    return {"name": slug, "column": column, "task": "multiclass", "classes": classes}


def target_lines(
    candidates: dict[str, list[str]],
    proposals: dict[str, dict[str, Any]],
    chosen: dict[str, Any] | None,
) -> list[str]:
    """The draft's target section: the chosen target, or a commented proposal for the first
    candidate column and the list of candidates with their most common values."""
    if chosen is not None:
        lines = [f"target:                      # {chosen['task']}, proposed from its values"]
        for key, value in chosen.items():
            lines.append(f"  {key}: {json.dumps(value)}")
        return [*lines, ""]
    lines = ["# target: what to predict. Set it (or draft again with --target COLUMN), e.g.:"]
    if candidates:
        column = next(iter(candidates))
        proposed = proposals.get(column) or {"name": "NAME", "column": column}
        lines += ["# target:"] + [f"#   {k}: {json.dumps(v)}" for k, v in proposed.items()]
        lines += ["# and remove its column from the features. Candidate targets (few values):"]
        lines += [f"#   {c}: {', '.join(v[:6])}" for c, v in candidates.items()]
    else:
        lines += ["# target:", "#   name: NAME", "#   column: COLUMN"]
        lines += ["#   task: regression       # or binary with an expression, or multiclass"]
    return [*lines, ""]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
