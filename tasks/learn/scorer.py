"""The model Perennial registers and scores with: an XGBoost booster and the state of the encoder
that feeds it (`Scorer`), stored as two plain files, never as a pickle:

- `booster.ubj`: XGBoost's own UBJSON model (trees, feature names and types);
- `encoder.json`: the encoder's state (`EncoderState`): the booster's input columns in order,
  which of them are categorical, each one's categories in code order, and XGBoost's feature
  types.

This file is also the registered model's code. MLflow's "models from code" runs it from the
model's folder when someone calls `mlflow.pyfunc.load_model("models:/<name>@champion")`: so it
imports nothing of Perennial and nothing heavier than numpy, pandas and XGBoost (and MLflow,
only when MLflow runs it). Perennial imports it as `tasks.learn.scorer` and reads the two files
with this, its own copy, never the code in the store (`tasks.registry.model_store.load_model`).

What the model answers follows its task, which the booster itself records (its objective; a
multiclass booster also carries its class names as the attribute `perennial_classes`):
- binary: `score` is the probability of the positive class, one float per row (what
  `perennial predict` writes as `champion_score`, and the pyfunc's `predict`), not the 0/1 label
  that MLflow's scikit-learn flavour returned for Perennial's earlier pickled models;
- regression: `score` (and `predict`) is the predicted value;
- multiclass: `score` (and `predict_proba`) is one probability per class, in the classes' order;
  the pyfunc answers a frame with one probability column per class and the chosen class.
`outputs` builds each task's answer columns: the pyfunc, batch predictions and serving use it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

ENCODER_FORMAT = "perennial.encoder/1"
BOOSTER_FILE, ENCODER_FILE = "booster.ubj", "encoder.json"
CATEGORY, NUMBER = "c", "float"  # XGBoost's feature types of category codes and of numbers
ENCODE_BLOCK_ROWS = 16_384  # rows x 21 float32 columns: about 1.4 MB, a cache's worth
CLASSES_ATTR = "perennial_classes"  # booster attribute: a multiclass model's class names (JSON)
Task = Literal["binary", "multiclass", "regression"]  # as tasks.core.metrics.TaskKind
# The task of a booster's objective: what its scores mean.
OBJECTIVE_TASKS: dict[str, Task] = {"binary:logistic": "binary", "multi:softprob": "multiclass"}
CHOSEN_CLASS = "predicted_class"  # the multiclass answer's column of the chosen class


class ModelFileError(ValueError):
    """A model file that is not what Perennial writes (the message says which and why)."""


def _plain(value: Any, column: str) -> str | int | float | bool:
    """A category as JSON holds it (numpy scalars as Python ones)."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
        return value
    raise ModelFileError(
        f"categorical column {column!r} has a category {value!r} of type "
        f"{type(value).__name__}: only text, integers, finite numbers and booleans are stored"
    )


@dataclass(frozen=True)
class EncoderState:
    """What turns model inputs into the booster's matrix. A category's code is its position in
    its column's categories; a missing value or a category training never saw is NaN, which
    XGBoost routes itself."""

    columns: tuple[str, ...]  # the booster's input columns, in order
    categories: dict[str, tuple[Any, ...]]  # categorical column -> categories in code order
    feature_types: tuple[str, ...]  # XGBoost's type of each column: CATEGORY or NUMBER

    @property
    def categorical(self) -> list[str]:
        return [c for c, kind in zip(self.columns, self.feature_types, strict=True) if kind == "c"]

    def encode(self, x: pd.DataFrame) -> np.ndarray:
        """`x` as the booster's input: one float32 matrix (what XGBoost bins anyway), with no
        float64 copy of the frame: beside the matrix, only the category codes are new."""
        values = []
        for column in self.columns:
            if column in self.categories:
                # A hashed look-up of each value's position (-1: missing or unseen -> NaN).
                codes = pd.Index(self.categories[column]).get_indexer(x[column])
                coded = codes.astype(np.float32)
                coded[codes < 0] = np.nan
                values.append(coded)
            else:
                values.append(_numeric_values(x[column]))
        matrix = np.empty((len(x), len(self.columns)), dtype=np.float32)
        # Filled a block of rows at a time: a column of a row-major matrix is a strided write,
        # and whole columns one after the other made a 10M-row matrix pass through memory once
        # per column (encode took 12x longer for 10x the rows).
        for start in range(0, len(x), ENCODE_BLOCK_ROWS):
            stop = start + ENCODE_BLOCK_ROWS
            for index, column_values in enumerate(values):
                matrix[start:stop, index] = column_values[start:stop]
        return matrix

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": ENCODER_FORMAT,
                "columns": list(self.columns),
                "categorical": self.categorical,
                "categories": {
                    column: [_plain(value, column) for value in values]
                    for column, values in self.categories.items()
                },
                "feature_types": list(self.feature_types),
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> EncoderState:
        """The state `to_json` wrote; anything else is a ModelFileError saying what is wrong."""
        try:
            state = json.loads(text)
        except ValueError as exc:
            raise ModelFileError(f"{ENCODER_FILE} is not JSON: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != ENCODER_FORMAT:
            raise ModelFileError(f"{ENCODER_FILE} is not a {ENCODER_FORMAT} encoder state")
        columns, types = state.get("columns"), state.get("feature_types")
        categories, categorical = state.get("categories"), state.get("categorical")
        if not (
            isinstance(columns, list)
            and all(isinstance(c, str) for c in columns)
            and len(set(columns)) == len(columns)
            and isinstance(types, list)
            and len(types) == len(columns)
            and set(types) <= {CATEGORY, NUMBER}
            and isinstance(categories, dict)
            and all(isinstance(v, list) for v in categories.values())
        ):
            raise ModelFileError(f"{ENCODER_FILE}: columns, feature types or categories malformed")
        found = cls(tuple(columns), {k: tuple(v) for k, v in categories.items()}, tuple(types))
        if categorical != found.categorical or list(categories) != found.categorical:
            raise ModelFileError(
                f"{ENCODER_FILE}: the categorical columns, their categories and the feature "
                "types disagree"
            )
        for column, values in categories.items():
            for value in values:
                _plain(value, column)
            if len({(type(v), v) for v in values}) != len(values):
                raise ModelFileError(f"{ENCODER_FILE}: column {column!r} repeats a category")
        return found


def _numeric_values(column: pd.Series) -> np.ndarray:
    """A column's values for `encode`: a view for numpy numbers (cast block by block as they
    are copied), float32 with NaN for missing for anything else (e.g. nullable Int64)."""
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "fiub":
        return column.to_numpy()
    return column.to_numpy(dtype=np.float32, na_value=np.nan)


def label_classes(booster: Any, classes: list[str]) -> None:
    """Record a multiclass booster's class names (in output order) in the booster itself."""
    booster.set_attr(**{CLASSES_ATTR: json.dumps(list(classes))})


def booster_task(booster: Any) -> tuple[Task, tuple[str, ...]]:
    """(task, class names) of a booster: binary, multiclass or regression by its objective."""
    objective = str(json.loads(booster.save_config())["learner"]["objective"]["name"])
    task: Task
    if objective in OBJECTIVE_TASKS:
        task = OBJECTIVE_TASKS[objective]
    elif objective.startswith("reg:"):
        task = "regression"
    else:
        raise ModelFileError(f"{BOOSTER_FILE}: objective {objective} is not one Perennial trains")
    if task != "multiclass":
        return task, ()
    try:
        classes = json.loads(booster.attr(CLASSES_ATTR) or "null")
    except ValueError:
        classes = None
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ModelFileError(f"{BOOSTER_FILE}: a multiclass booster without its class names")
    return task, tuple(classes)


def outputs(scores: np.ndarray, task: str, classes: tuple[str, ...] = ()) -> pd.DataFrame:
    """A model's answer per row, by task, as named columns (the one place each task's answer
    is built: the pyfunc, batch predictions and every serving protocol call it): `score`, the
    positive class's probability (binary); `value` (regression); `probability_<class>` for each
    class and `predicted_class`, the most probable (multiclass)."""
    if task == "binary":
        return pd.DataFrame({"score": scores})
    if task == "regression":
        return pd.DataFrame({"value": scores})
    columns = {f"probability_{name}": scores[:, i] for i, name in enumerate(classes)}
    chosen = np.asarray(classes, dtype=object)[np.argmax(scores, axis=1)]
    return pd.DataFrame({**columns, CHOSEN_CLASS: chosen})


class Scorer:
    """A fitted model: the encoder's state and the XGBoost booster it feeds; `task` (binary,
    multiclass, regression) and `classes` come from the booster."""

    def __init__(self, encoder: EncoderState, booster: Any) -> None:
        if list(booster.feature_names or []) != list(encoder.columns) or list(
            booster.feature_types or []
        ) != list(encoder.feature_types):
            raise ModelFileError(
                "the booster's feature names and types are not the encoder's columns"
            )
        self.encoder, self.booster = encoder, booster
        self.task, self.classes = booster_task(booster)

    @property
    def iteration_range(self) -> tuple[int, int]:
        """The boosting rounds it predicts with: up to the best iteration when the booster was
        trained with early stopping, every round otherwise ((0, 0))."""
        best = self.booster.attr("best_iteration")
        return (0, int(best) + 1) if best is not None else (0, 0)

    def score(self, x: pd.DataFrame) -> np.ndarray:
        """The task's scores of each row of model inputs `x`: the positive class's probability
        (binary, (n,)), each class's probability (multiclass, (n, k)), the value (regression)."""
        scores = self.booster.inplace_predict(
            self.encoder.encode(x), iteration_range=self.iteration_range, missing=np.nan
        )
        scores = np.asarray(scores, dtype=np.float64)
        return scores.reshape(len(x), -1) if self.task == "multiclass" else scores.reshape(-1)

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        """Rows x class probabilities, as a scikit-learn classifier gives them (binary: negative,
        positive). A regression model has none."""
        if self.task == "regression":
            raise TypeError("a regression model predicts values (predict), not probabilities")
        scores = self.score(x)
        return scores if self.task == "multiclass" else np.column_stack([1.0 - scores, scores])

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """The predicted value (regression), or the most probable class's index (classifiers)."""
        scores = self.score(x)
        if self.task == "regression":
            return scores
        return np.argmax(scores, axis=1) if self.task == "multiclass" else (scores > 0.5) * 1

    def outputs(self, x: pd.DataFrame) -> pd.DataFrame:
        """`outputs` of this model's scores of `x`."""
        return outputs(self.score(x), self.task, self.classes)

    def pyfunc_output(self, x: pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """What the registered model's pyfunc `predict` answers (its MLflow signature's output):
        the scores (binary, regression), or the `outputs` frame (multiclass)."""
        return self.outputs(x) if self.task == "multiclass" else self.score(x)

    def write(self, folder: Path) -> dict[str, Path]:
        """The two files in `folder`, by role: MLflow's `artifacts=` of the pyfunc model."""
        folder.mkdir(parents=True, exist_ok=True)
        booster, encoder = folder / BOOSTER_FILE, folder / ENCODER_FILE
        booster.write_bytes(bytes(self.booster.save_raw(raw_format="ubj")))
        encoder.write_text(self.encoder.to_json())
        return {"booster": booster, "encoder": encoder}

    @classmethod
    def read(cls, booster: Path | str, encoder: Path | str) -> Scorer:
        """The model `write` stored: XGBoost parses its own UBJSON, json the encoder's state."""
        import xgboost

        state = EncoderState.from_json(Path(encoder).read_text())
        try:
            model = xgboost.Booster(model_file=bytearray(Path(booster).read_bytes()))
        except xgboost.core.XGBoostError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise ModelFileError(f"{BOOSTER_FILE} is not an XGBoost model: {first}") from None
        return cls(state, model)


def _set_mlflow_model() -> None:
    """Hand MLflow the pyfunc model of this file (see the module's docstring)."""
    import mlflow.models
    from mlflow.pyfunc import PythonModel

    class PerennialModel(PythonModel):
        """`predict`: the probability of the positive class of each input row (binary), the
        value (regression), or each class's probability and the chosen class (multiclass)."""

        scorer: Scorer

        def load_context(self, context: Any) -> None:
            self.scorer = Scorer.read(context.artifacts["booster"], context.artifacts["encoder"])

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> np.ndarray | pd.DataFrame:
            return self.scorer.pyfunc_output(model_input)

    mlflow.models.set_model(PerennialModel())


# MLflow runs this file under a name of its own; imported by Perennial, it is this module.
if __name__ != "tasks.learn.scorer":
    _set_mlflow_model()
