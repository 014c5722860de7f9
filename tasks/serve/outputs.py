"""A served model's answers by column, for the protocols that answer by column (the Open
Inference Protocol's output tensors) or describe the answer (its model metadata).

Answers are built in one place, `ServedModel.answers` (a dict a row, by task: `score` and
`label`, `value`, or `probabilities` by class and the chosen `class`); `/predict` sends them as
they are, and this module only turns them into columns: a new kind of answer needs nothing here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tasks.serve.native_scoring import ServedModel

EXAMPLE_THRESHOLD = 0.5  # the fields of an answer, their types and shapes, do not depend on it


def answer_columns(answers: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Answers (one dict a row) as one column per field: a number or text a row, or rows x keys
    for a field that maps keys to numbers (a multiclass model's probabilities by class)."""
    if not answers:
        return {}
    columns: dict[str, np.ndarray] = {}
    for field, first in answers[0].items():
        values = [answer[field] for answer in answers]
        if isinstance(first, dict):
            columns[field] = np.array([list(value.values()) for value in values], dtype=np.float64)
        else:
            columns[field] = np.asarray(values)
    return columns


def answer_fields(model: ServedModel) -> dict[str, np.ndarray]:
    """The fields of the model's answer, with their types and shapes: its answer to one row of
    scores of its shape (one a row, or one a class)."""
    example = np.zeros((1, len(model.classes))) if model.classes else np.zeros(1)
    return answer_columns(model.answers(example, EXAMPLE_THRESHOLD))
