"""What a served model answers for scored rows, whatever protocol asked: named output columns,
one entry per row. `/predict` puts them in each prediction's object, MLflow's `/invocations`
answers the column the registered MLflow model's `predict` returns, and the Open Inference
Protocol (KServe v2) sends each column as an output tensor (its metadata too is read from here).

`prediction_outputs` is the one place the answer's shape is decided: a new kind of target
(a value, class probabilities and the chosen class) changes it here, and every protocol follows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tasks.serve.native_scoring import ServedModel

SCORE, LABEL = "score", "label"


@dataclass(frozen=True)
class Outputs:
    """Named output columns, in the order they are answered. Each array's first axis is the
    rows (a column of class probabilities would be rows x classes)."""

    columns: dict[str, np.ndarray]
    # The column the registered MLflow model's `predict` returns: what `mlflow models serve`
    # answers for this model, and so what `/invocations` answers.
    primary: str

    @property
    def rows(self) -> int:
        return len(self.columns[self.primary])


def prediction_outputs(model: ServedModel, scores: np.ndarray, threshold: float) -> Outputs:
    """The answer for rows that `model` scored: the probability of the positive class, and the
    label it gives at `threshold` (the served config's `serve.threshold`)."""
    del model  # one kind of model today; its target decides the answer's shape
    return Outputs(
        columns={SCORE: scores, LABEL: (scores >= threshold).astype(np.int64)},
        primary=SCORE,
    )


def output_columns(model: ServedModel) -> Outputs:
    """The outputs' names, types and shapes, with no row: what a protocol's metadata says and
    what a request may ask for (they do not depend on the threshold)."""
    return prediction_outputs(model, np.empty(0, dtype=np.float64), 0.5)
