"""The dataset's own sections: where batches come from (`source:`), how rows fall into batches
(`time:`), what is predicted (`target:`) and from which columns (`features:`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from tasks.core.config_section import Section
from tasks.core.metrics import TaskKind

# Lower case, '-' allowed: the target names the model `<dataset>-<target>`.
TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")

TimeFeature = Literal["day_of_week", "day_of_month", "day_of_year", "hour", "month"]


class JoinTable(Section):
    table: str = Field(description="File name of the table to join, beside the main table.")
    join_on: list[str] = Field(min_length=1, description="Key columns present in both tables.")
    columns: dict[str, str] = Field(
        description="Columns to take from the joined table, mapped to their new names."
    )


class SourceConfig(Section):
    """Where batches come from when `ingest` is given no `--source` file."""

    kind: Literal["package_tables", "files"]
    package: str | None = Field(None, description="Python package that ships the tables.")
    directory: str = Field("data", description="Folder inside the package holding the tables.")
    table: str | None = Field(None, description="Main table file (one row per example).")
    joins: list[JoinTable] = Field(default_factory=list)
    path_template: str | None = Field(
        None, description="For kind=files: path of a batch's file, with {batch} in it."
    )

    @model_validator(mode="after")
    def _kind_has_its_fields(self) -> SourceConfig:
        if self.kind == "package_tables" and not (self.package and self.table):
            raise ValueError("kind 'package_tables' needs 'package' and 'table'")
        if self.kind == "files" and not self.path_template:
            raise ValueError("kind 'files' needs 'path_template' (with {batch} in it)")
        return self


class TimeConfig(Section):
    column: str = Field(description="Timestamp column that places a row in a batch.")
    batch_period: Literal["month", "week", "day"] = "month"
    timezone: str = Field("UTC", description="Zone in which batch periods begin and end.")


class TargetConfig(Section):
    """What is predicted. `task` says what kind of value (tasks/core/metrics.py lists each
    task's metrics):
    - `binary`: `expression` is a boolean over columns, e.g. `arr_delay > 15`;
    - `regression`: the label is `column`'s value, or `expression`, a numeric expression;
    - `multiclass`: the label is `column`'s value (or `expression`'s), one of `classes`; or,
      with `bins`, the numeric value cut at those edges, the pieces named by `classes`."""

    name: str = Field(description="Name of what is predicted; part of the registered model name.")
    column: str = Field(
        description="Raw column the label comes from; rows where it is null have no label."
    )
    expression: str | None = Field(
        None,
        description="The label over columns, e.g. 'arr_delay > 15' (binary) or 'arr_delay / 60' "
        "(regression): comparisons, `in` lists, & | ~ and + - * / (tasks/core/expression.py); "
        "never evaluated as code. Needed for binary; otherwise the column's value by default.",
    )
    task: TaskKind = Field("binary", description="binary, multiclass or regression.")
    classes: list[str] | None = Field(
        None,
        description="multiclass: the class names, in the order the model outputs them. Without "
        "`bins`, the values the label column holds; with `bins`, one name per piece.",
    )
    bins: list[float] | None = Field(
        None,
        description="multiclass from a number: increasing edges; a value v falls in the first "
        "piece whose upper edge is >= v (e.g. [15, 60]: <= 15, (15, 60], > 60).",
    )
    regression_objective: Literal["squarederror", "pseudohubererror"] = Field(
        "squarederror",
        description="regression: XGBoost's loss, reg:squarederror or reg:pseudohubererror "
        "(less pulled by outliers).",
    )
    unit: str = Field(
        "", max_length=16, description="regression: the label's unit, printed after its values."
    )

    @field_validator("expression")
    @classmethod
    def _expression_in_grammar(cls, value: str | None) -> str | None:
        from tasks.core.expression import parse

        if value is not None:
            parse(value, "value")  # ExpressionError (a ValueError) names the refused piece
        return value

    @property
    def expression_gives(self) -> str:
        """The kind of value the expression must give for this task."""
        return {"binary": "boolean", "regression": "number"}.get(self.task, "value")

    @model_validator(mode="after")
    def _task_has_its_fields(self) -> TargetConfig:
        from tasks.core.expression import parse

        if self.task == "binary" and self.expression is None:
            raise ValueError("a binary target needs `expression`, e.g. 'arr_delay > 15'")
        if self.expression is not None:
            try:
                parse(self.expression, self.expression_gives)
            except ValueError as exc:
                raise ValueError(f"expression for a {self.task} target: {exc}") from None
        if self.task != "multiclass" and (self.classes is not None or self.bins is not None):
            raise ValueError("`classes` and `bins` are for task: multiclass")
        if self.task == "multiclass":
            classes = self.classes or []
            if len(classes) < 3:
                raise ValueError(
                    "a multiclass target needs `classes`, at least 3 names (2 is binary)"
                )
            if len(set(classes)) != len(classes):
                raise ValueError(f"classes {classes} repeat a name")
            if self.bins is not None:
                if list(self.bins) != sorted(set(self.bins)):
                    raise ValueError(f"bins {self.bins} must be strictly increasing")
                if len(self.bins) + 1 != len(classes):
                    raise ValueError(
                        f"{len(self.bins)} bins make {len(self.bins) + 1} pieces: "
                        f"give as many classes, not {len(classes)}"
                    )
        return self

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        # Lower case: model names and the storage folders named after them must not differ
        # only by case (a case-insensitive disk would merge them).
        if not TARGET_NAME.fullmatch(value):
            raise ValueError("use lower-case letters, digits, '-' and '_', e.g. late-arrival")
        return value


class FeaturesConfig(Section):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    time: list[TimeFeature] = Field(
        default_factory=list, description="Features derived from the time column (in its zone)."
    )
    forbidden: list[str] = Field(
        default_factory=list,
        description="Columns that leak the outcome; listing one as a feature is an error.",
    )

    @model_validator(mode="after")
    def _no_leaks_no_repeats(self) -> FeaturesConfig:
        used = self.numeric + self.categorical
        if not used and not self.time:
            raise ValueError("at least one feature is needed")
        leaking = sorted(set(used) & set(self.forbidden))
        if leaking:
            raise ValueError(f"features {leaking} are listed as forbidden (they leak the outcome)")
        repeated = sorted({c for c in used if used.count(c) > 1})
        if repeated:
            raise ValueError(f"features {repeated} are listed twice")
        return self

    @property
    def columns(self) -> list[str]:
        """Model input columns, in the order the model sees them."""
        return [*self.numeric, *self.time, *self.categorical]
