"""Features and the time split: deterministic, driven only by the dataset's config.

Training uses earlier batches, the newest batch is the holdout on which challenger and champion
are compared; within the training batches the newest one validates the hyper-parameter search.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.batches import local_times
from tasks.core.config import PerennialConfig
from tasks.core.expression import parse
from tasks.core.storage import Storage

BATCH_COLUMN = "_batch"


class SplitError(ValueError):
    """Not enough batches, or batches out of order, for a train / validation / holdout split."""


@dataclass(frozen=True)
class TimeSplit:
    train: list[str]  # fit the search's trials
    validation: str  # scores the search's trials
    holdout: str  # compares challenger with champion

    @property
    def fit_batches(self) -> list[str]:
        """Batches the final model is trained on: everything before the holdout."""
        return [*self.train, self.validation]


def time_split(batches: list[str], min_train_batches: int) -> TimeSplit:
    """Newest batch -> holdout, the one before -> validation, the rest -> train."""
    ordered = sorted(set(batches))
    if len(ordered) != len(batches):
        raise SplitError(f"batches {batches} repeat one")
    needed = min_train_batches + 2
    if len(ordered) < needed:
        raise SplitError(
            f"{len(ordered)} batch(es) given ({', '.join(ordered)}); training needs at least "
            f"{needed}: {min_train_batches} to train on, one to validate the search, one holdout"
        )
    return TimeSplit(train=ordered[:-2], validation=ordered[-2], holdout=ordered[-1])


def load_validated(storage: Storage, config: PerennialConfig, batches: list[str]) -> pd.DataFrame:
    """Validated batches, concatenated, with their batch id in `_batch`."""
    frames = []
    for batch in batches:
        frame = storage.read_parquet(catalog.key("validated", config, batch=batch))
        frames.append(frame.assign(**{BATCH_COLUMN: batch}))
    return pd.concat(frames, ignore_index=True)


def label(frame: pd.DataFrame, config: PerennialConfig) -> pd.Series:
    """The target by `target.task`: 0/1 integers (binary), class indexes 0..k-1 in
    `target.classes` order (multiclass), float values (regression). Rows whose target column is
    null must be dropped first. The expression is checked at config load and evaluated by our
    own evaluator, never by `DataFrame.eval` (which runs attribute access and calls)."""
    target = config.target
    values = (
        parse(target.expression, target.expression_gives).evaluate(frame)
        if target.expression is not None
        else frame[target.column]
    )
    if target.task == "binary":
        labels = np.asarray(values, dtype=bool).astype(np.int8)
    elif target.task == "regression":
        labels = np.asarray(values, dtype=np.float64)
    else:
        labels = class_indexes(pd.Series(np.asarray(values), index=frame.index), config)
    return pd.Series(labels, index=frame.index, name="y")


def class_indexes(values: pd.Series, config: PerennialConfig) -> np.ndarray:
    """Each multiclass label's index in `target.classes`: the value cut at `target.bins`, or the
    value itself looked up by name. A value outside the classes is -1 (the gate reports it)."""
    classes = config.target.classes or []
    if config.target.bins is not None:
        # right=True: a value equal to an edge falls in the piece below it (<= 15 is on time).
        return np.digitize(values.astype("float64"), config.target.bins, right=True).astype(
            np.int16
        )
    index = {name: i for i, name in enumerate(classes)}
    return np.array([index.get(str(v), -1) for v in values], dtype=np.int16)


def time_features(frame: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    local = local_times(frame[config.time.column], config.time)
    derive = {
        "day_of_week": lambda: local.dt.day_of_week,
        "day_of_month": lambda: local.dt.day,
        "day_of_year": lambda: local.dt.dayofyear,
        "hour": lambda: local.dt.hour,
        "month": lambda: local.dt.month,
    }
    return pd.DataFrame({name: derive[name]().astype("float64") for name in config.features.time})


def model_inputs(frame: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    """The columns the model sees, in order: numeric as float, categorical as string."""
    spec = config.features
    missing = [c for c in [*spec.numeric, *spec.categorical] if c not in frame.columns]
    if missing:
        raise KeyError(f"feature columns {missing} are not in the data")
    numeric = frame[spec.numeric].astype("float64")
    categorical = frame[spec.categorical].astype("object").where(frame[spec.categorical].notna())
    derived = time_features(frame, config).set_axis(frame.index)
    return pd.concat([numeric, derived, categorical], axis=1)[spec.columns]


def features_and_label(
    frame: pd.DataFrame, config: PerennialConfig
) -> tuple[pd.DataFrame, pd.Series]:
    """Model inputs and labels of the rows that have a label. A multiclass label outside
    `target.classes` (index -1, which the gate reports) is no label: the row is left out, as XGBoost
    learns only the classes it was given."""
    labelled = frame[frame[config.target.column].notna()]
    labels = label(labelled, config)
    if config.target.task == "multiclass":
        known = (labels >= 0).to_numpy()
        labelled, labels = labelled[known], labels[known]
    return model_inputs(labelled, config), labels


def sensitive_groups(frame: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame | None:
    """The `fairness.sensitive` columns of `frame` as group labels (text; a missing value is its
    own group, "missing"), or None when the config names none. Evaluation reads them beside the
    model inputs; the model never sees them."""
    columns = config.fairness.sensitive
    if not columns:
        return None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise KeyError(
            f"fairness.sensitive columns {missing} are not in the validated data of "
            f"{config.dataset}: keep them in the batches (they are read for evaluation only)"
        )
    return pd.DataFrame({column: _group_labels(frame[column]) for column in columns})


def _group_labels(values: pd.Series) -> pd.Series:
    # A column of whole numbers with gaps arrives as floats: its groups are 0 and 1, not 0.0.
    if pd.api.types.is_float_dtype(values) and (values.dropna() % 1 == 0).all():
        values = values.astype("Int64")
    return values.astype("string").fillna("missing").astype(str)


def newest_rows(frame: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    """Cap training data at `split.max_train_rows`, keeping the newest rows."""
    cap = config.split.max_train_rows
    if cap is None or len(frame) <= cap:
        return frame
    order = local_times(frame[config.time.column], config.time).argsort(kind="stable")
    return frame.iloc[order.to_numpy()[-cap:]]


@dataclass
class Datasets:
    split: TimeSplit
    x_train: pd.DataFrame
    y_train: pd.Series
    x_valid: pd.DataFrame
    y_valid: pd.DataFrame | pd.Series
    x_holdout: pd.DataFrame
    y_holdout: pd.Series
    # The holdout rows' sensitive columns (`fairness.sensitive`), aligned with x_holdout: for
    # the group metrics of evaluation only. None without a fairness section.
    groups_holdout: pd.DataFrame | None = None

    # Cached: training, scoring and the drift reference all read the fit rows, and each concat
    # would copy every one of them again (gigabytes at 10M rows).
    @cached_property
    def x_fit(self) -> pd.DataFrame:
        return pd.concat([self.x_train, self.x_valid])

    @cached_property
    def y_fit(self) -> pd.Series:
        return pd.concat([self.y_train, self.y_valid])


def build_datasets(storage: Storage, config: PerennialConfig, batches: list[str]) -> Datasets:
    split = time_split(batches, config.split.min_train_batches)
    frame = load_validated(storage, config, batches)
    parts = {}
    holdout_groups = None
    for name, members in (
        ("train", split.train),
        ("valid", [split.validation]),
        ("holdout", [split.holdout]),
    ):
        rows = frame[frame[BATCH_COLUMN].isin(members)]
        if name == "train":
            rows = newest_rows(rows, config)
        x, y = features_and_label(rows, config)
        if y.nunique() < 2:
            raise SplitError(
                f"{name} batches {members} have a single class: nothing to learn or score; "
                "choose other --batches, or check the target expression in the dataset YAML"
            )
        parts[name] = (x.reset_index(drop=True), y.reset_index(drop=True))
        groups = sensitive_groups(rows.loc[x.index], config)
        if name == "holdout" and groups is not None:
            holdout_groups = groups.reset_index(drop=True)
    return Datasets(
        split, *parts["train"], *parts["valid"], *parts["holdout"], groups_holdout=holdout_groups
    )


@task(name="build-features", cache_policy=NO_CACHE)
def build_datasets_task(config: PerennialConfig, batches: list[str]) -> Datasets:
    from tasks.core.storage import open_storage

    return build_datasets(open_storage(config.home), config, batches)
