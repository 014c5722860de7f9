"""The one configuration model: a dataset YAML, overridable by `PERENNIAL_*` environment variables.

Relative paths in a YAML are resolved against the YAML's own folder, so a config works from any
working directory. Environment variables win over the file (`PERENNIAL_HOME`,
`PERENNIAL_MLFLOW_URI`, `PERENNIAL_OPTUNA_STORAGE`, and nested fields with `__`, e.g.
`PERENNIAL_HPO__TRIALS=5`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from tasks.core.config_alerts import AlertsConfig
from tasks.core.config_cost import CostConfig
from tasks.core.config_dataset import FeaturesConfig, SourceConfig, TargetConfig, TimeConfig
from tasks.core.config_drift import DriftConfig
from tasks.core.config_fairness import FairnessConfig
from tasks.core.config_privacy import PrivacyConfig
from tasks.core.config_promotion import (
    TASK_DEFAULT_GUARDS,
    TASK_GUARDS,
    GuardMetric,
    PromotionConfig,
    default_guards,
)
from tasks.core.config_section import ConfigError
from tasks.core.config_serving import ServeConfig
from tasks.core.config_training import HpoConfig, SplitConfig, TrainingConfig
from tasks.core.config_validation import ValidationConfig

DEFAULT_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_DATASET = "flights"
DEFAULT_CONFIG = DEFAULT_CONFIGS_DIR / f"{DEFAULT_DATASET}.yaml"
# A dataset name as flows, deployments and the UI take it: the stem of a YAML in the configs
# folder. Never a path: a UI parameter must not pick an arbitrary file on the worker. No '-'
# (and one case): the registered model is `<dataset>-<target>`, so the first '-' ends the
# dataset and `a-b` + `c` can never name the same model as `a` + `b-c`.
DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
DATASET_NAME_RULE = (
    "use lower-case letters, digits and '_' (no '-': the model is named <dataset>-<target>, "
    "so the first '-' must end the dataset name), e.g. flights or flight_delays"
)


class PerennialConfig(BaseSettings):
    """A dataset's whole configuration. Built by `load_config`, never by hand."""

    model_config = SettingsConfigDict(
        env_prefix="PERENNIAL_", env_nested_delimiter="__", extra="forbid"
    )

    dataset: str = Field(description="Dataset name: names storage folders and the model.")
    home: str = Field(
        ".perennial", description="Root of all state: a folder (or s3://bucket/prefix)."
    )
    mlflow_uri: str | None = Field(
        None, description="MLflow tracking URI (default: SQLite in home)."
    )
    optuna_storage: str | None = Field(
        None, description="Optuna storage URL (default: a journal file in home)."
    )
    source: SourceConfig
    format: Literal["csv", "parquet"] = "csv"
    time: TimeConfig
    target: TargetConfig
    features: FeaturesConfig
    split: SplitConfig = Field(default_factory=SplitConfig)  # type: ignore[arg-type]
    primary_metric: str = Field(
        "",
        description="The metric promotion judges by, one of the target task's (tasks/core/"
        "metrics.py): roc_auc (binary), macro_auc (multiclass), rmse or mae (regression). "
        "Default: the task's first.",
    )
    guard_metrics: list[GuardMetric] = Field(default_factory=default_guards)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)  # type: ignore[arg-type]
    hpo: HpoConfig = Field(default_factory=HpoConfig)  # type: ignore[arg-type]
    validation: ValidationConfig
    # Where the model trains does not shape it (the same parameters, seed and rows): excluded from
    # dumps, so from the fingerprint, like `hpo.workers`.
    training: TrainingConfig = Field(default_factory=TrainingConfig, exclude=True)  # type: ignore[arg-type]
    # Monitoring thresholds do not shape a model: excluded from dumps, so from the fingerprint.
    drift: DriftConfig = Field(default_factory=DriftConfig, exclude=True)  # type: ignore[arg-type]
    # How the model is served does not shape it either: excluded like `drift`.
    serve: ServeConfig = Field(default_factory=ServeConfig, exclude=True)  # type: ignore[arg-type]
    # Who is told, and how, shapes no model either.
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, exclude=True)  # type: ignore[arg-type]
    # Prices shape no model either.
    cost: CostConfig = Field(default_factory=CostConfig, exclude=True)  # type: ignore[arg-type]
    # Nor do the groups a model is judged on: sensitive columns are never features.
    fairness: FairnessConfig = Field(default_factory=FairnessConfig, exclude=True)  # type: ignore[arg-type]
    # Declared columns are never features, so the declaration shapes no model; the gate's
    # fingerprint holds it (tasks/data/validate.py).
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, exclude=True)
    config_path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _primary_metric_fits_the_task(self) -> PerennialConfig:
        from tasks.core.metrics import TASK_METRICS, default_primary

        allowed = TASK_METRICS[self.target.task]
        if not self.primary_metric:
            self.primary_metric = default_primary(self.target.task)
        elif self.primary_metric not in allowed:
            raise ValueError(
                f"primary_metric {self.primary_metric!r} does not judge a {self.target.task} "
                f"target: use one of {list(allowed)}"
            )
        return self

    @model_validator(mode="after")
    def _guards_fit_the_task(self) -> PerennialConfig:
        task = self.target.task
        if "guard_metrics" not in self.model_fields_set:
            self.guard_metrics = list(TASK_DEFAULT_GUARDS[task])
        wrong = [g for g in self.guard_metrics if g not in TASK_GUARDS[task]]
        if wrong:
            raise ValueError(
                f"guard_metrics {wrong} do not guard a {task} target: use some of "
                f"{list(TASK_GUARDS[task])}"
            )
        return self

    @model_validator(mode="after")
    def _slices_are_features(self) -> PerennialConfig:
        unknown = sorted(set(self.promotion.slices) - set(self.features.categorical))
        if unknown:
            raise ValueError(f"promotion.slices {unknown} must be categorical features")
        return self

    @model_validator(mode="after")
    def _target_is_not_a_feature(self) -> PerennialConfig:
        # A drafted config lists every column as a feature: the one chosen as target must go.
        features = self.features.numeric + self.features.categorical
        if self.target.column in features:
            raise ValueError(
                f"target column {self.target.column!r} is also listed as a feature (the model "
                "would see its label): remove it from features"
            )
        return self

    @model_validator(mode="after")
    def _sensitive_only_for_evaluation(self) -> PerennialConfig:
        # A sensitive column splits the holdout into groups; a model that saw it could treat
        # each group by its value, which the fairness check is there to catch, not to allow.
        sensitive = self.fairness.sensitive
        used = {*self.features.numeric, *self.features.categorical}
        for column in sensitive:
            if column in used:
                raise ValueError(
                    f"fairness.sensitive column {column!r} is also a feature: a sensitive column "
                    "serves only to judge the model by group; remove it from features"
                )
            if column in (self.target.column, self.time.column):
                raise ValueError(
                    f"fairness.sensitive column {column!r} is the target or time column: name "
                    "a column that says which group a row belongs to"
                )
        if sensitive and self.target.task != "binary":
            raise ValueError(
                f"fairness needs a binary target for now (target.task is {self.target.task!r}): "
                "remove the fairness section or predict a yes/no outcome"
            )
        return self

    @model_validator(mode="after")
    def _personal_columns_are_never_used(self) -> PerennialConfig:
        roles = {
            "a feature": self.features.numeric + self.features.categorical,
            "the target column": [self.target.column],
            "the time column": [self.time.column],
            "a key column (it is dropped)": [
                c for c in self.validation.key_columns if self.privacy.columns.get(c) == "drop"
            ],
            "a fairness.sensitive column (it is dropped)": [
                c for c in self.fairness.sensitive if self.privacy.columns.get(c) == "drop"
            ],
        }
        for role, columns in roles.items():
            if clash := sorted(set(self.privacy.columns) & set(columns)):
                raise ValueError(
                    f"privacy.columns {clash} is also {role}: personal data never reaches a "
                    "model; remove it there, or from privacy.columns"
                )
        return self

    @model_validator(mode="after")
    def _s3_home_names_shared_back_ends(self) -> PerennialConfig:
        # The SQLite / journal defaults live in a local home; an S3 home has nowhere to put them.
        if self.home.startswith("s3://"):
            missing = [
                f"{field} (PERENNIAL_{field.upper()})"
                for field in ("mlflow_uri", "optuna_storage")
                if getattr(self, field) is None
            ]
            if missing:
                raise ValueError(
                    f"home {self.home} is in S3, so set {' and '.join(missing)}: e.g. an MLflow "
                    "server URL and a postgresql:// Optuna URL (`terraform output perennial_env`)"
                )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the YAML (which arrives as init arguments).
        return env_settings, init_settings

    @field_validator("dataset")
    @classmethod
    def _dataset_is_slug(cls, value: str) -> str:
        if not DATASET_NAME.fullmatch(value):
            raise ValueError(f"{value[:64]!r}: {DATASET_NAME_RULE}")
        return value

    @property
    def model_name(self) -> str:
        """Registered model name: `<dataset>-<target>`; unambiguous, as a dataset name has no
        '-' (the first '-' separates the two)."""
        return f"{self.dataset}-{self.target.name}"

    @property
    def tracking_uri(self) -> str:
        # An S3 home always names its back ends (validated above): these defaults are local only.
        return self.mlflow_uri or f"sqlite:///{(Path(self.home) / 'mlflow.db').resolve()}"

    @property
    def optuna_storage_url(self) -> str:
        return self.optuna_storage or f"journal:{(Path(self.home) / 'optuna.journal').resolve()}"

    def fingerprint(self) -> str:
        """Hash of everything that shapes a model; back ends and paths are left out."""
        shaping = self.model_dump(
            mode="json", exclude={"home", "mlflow_uri", "optuna_storage", "config_path"}
        )
        shaping["validation"].pop("gx_root", None)
        _drop_other_tasks_fields(shaping, self.target.task)
        blob = json.dumps(shaping, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# Fields only some tasks read: left out of the fingerprint of the others, so that a binary
# config keeps the fingerprint (and its studies and training keys) it had before they existed.
TASK_ONLY_FIELDS = {
    "target": {
        "classes": "multiclass",
        "bins": "multiclass",
        "regression_objective": "regression",
        "unit": "regression",
    },
    "promotion": {"min_skill": "regression", "max_bias_share": "regression"},
}


def _drop_other_tasks_fields(shaping: dict[str, Any], task: str) -> None:
    for section, owners in TASK_ONLY_FIELDS.items():
        for name, owner in owners.items():
            if owner != task:
                shaping[section].pop(name, None)


def _resolve_relative(raw: dict[str, Any], base: Path) -> None:
    """Make the YAML's relative paths relative to the YAML file rather than the working dir."""
    for holder, key in ((raw, "home"), (raw.get("validation") or {}, "gx_root")):
        value = holder.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            holder[key] = str((base / holder[key]).resolve())
    source = raw.get("source") or {}
    template = source.get("path_template")
    if isinstance(template, str) and not Path(template).is_absolute():
        source["path_template"] = str(base / template)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"field '{where}': {item['msg'].removeprefix('Value error, ')}")
    # One bad field: one line (a refused command prints one line); several: one line each.
    return f" {lines[0]}" if len(lines) == 1 else "".join(f"\n  {line}" for line in lines)


def configs_dir() -> Path:
    """The folder of dataset YAMLs that flows and deployments name datasets from: `configs/` of
    the project, or PERENNIAL_CONFIGS_DIR (set by the operator, never by a flow parameter; a
    CLI run names its YAML's own folder instead, `dataset_folder`)."""
    return Path(os.environ.get("PERENNIAL_CONFIGS_DIR") or DEFAULT_CONFIGS_DIR).resolve()


def dataset_names(folder: Path | None = None) -> list[str]:
    """Datasets of the configs folder: every `<name>.yaml` whose name is a valid dataset name."""
    root = folder or configs_dir()
    return sorted(p.stem for p in root.glob("*.yaml") if DATASET_NAME.fullmatch(p.stem))


def dataset_folder(folder: str | Path | None) -> Path:
    """The folder a flow reads its dataset's YAML from: the operator's (`configs_dir()`) unless
    the run names another, as a CLI run with `--config other/dir/x.yaml` does. A flow parameter
    comes from the UI and the API too: the folder must exist, and a served (deployment) run may
    not name one other than the operator's, so that it cannot load a YAML from anywhere on the
    worker's disk."""
    operator = configs_dir()
    if folder is None or str(folder) == "":
        return operator
    chosen = Path(folder).expanduser().resolve()
    if chosen == operator:
        return operator
    if not chosen.is_dir():
        raise ConfigError(
            f"configs_dir {str(folder)[:200]!r} is not a folder: name the folder of the dataset "
            f"YAMLs, or leave it empty for {operator}"
        )
    from prefect.runtime import deployment  # only here: reading a config needs no Prefect

    if deployment.id:
        raise ConfigError(
            f"a served run reads its dataset from the operator's configs folder ({operator}, "
            "PERENNIAL_CONFIGS_DIR), not from a folder named in its parameters: leave configs_dir "
            "empty, or put the YAML there"
        )
    return chosen


def dataset_config(dataset: str | None, folder: str | Path | None = None) -> PerennialConfig:
    """The config of a dataset named as flows take it (`flights` -> configs/flights.yaml), from
    `folder` when a run names one (`dataset_folder`). Parsed once per file and environment
    (`load_config`): a flow run in the CLI's process, and its failure hook, reuse the CLI's
    parse."""
    name = dataset or DEFAULT_DATASET
    root = dataset_folder(folder)
    if not isinstance(name, str) or not DATASET_NAME.fullmatch(name):
        raise ConfigError(
            f"dataset {str(name)[:80]!r}: give the name of a YAML in {root} "
            f"({', '.join(dataset_names(root)) or 'none yet'}), not a path"
        )
    path = root / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no dataset {name!r} in {root}: known are "
            f"{', '.join(dataset_names(root)) or 'none'}; add {name}.yaml there"
        )
    return load_config(path)


# Parsed configs by (resolved file, sha256 of its text, the PERENNIAL_* environment that
# overrides it): an edited file or a changed variable is parsed again. A handful of datasets per
# process at most; the oldest goes first.
_PARSED: dict[tuple[Path, str, tuple[tuple[str, str], ...]], PerennialConfig] = {}
_PARSED_KEPT = 32


def _overrides() -> tuple[tuple[str, str], ...]:
    """The environment variables that can override a config (pydantic-settings reads
    `PERENNIAL_*` whatever their case)."""
    return tuple(
        sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("PERENNIAL_"))
    )


def load_config(path: Path | str | None = None) -> PerennialConfig:
    """Load and check a dataset YAML. Raises ConfigError naming the file and each bad field.

    The file is parsed once per content and environment; each caller gets its own copy (a test
    or a caller that changes its config changes no one else's)."""
    config_path = Path(path) if path else DEFAULT_CONFIG
    if not config_path.is_file():
        raise ConfigError(f"{config_path}: config file not found")
    text = config_path.read_text()
    key = (config_path.resolve(), hashlib.sha256(text.encode()).hexdigest(), _overrides())
    if key not in _PARSED:
        parsed = _parse(config_path, text)
        if len(_PARSED) >= _PARSED_KEPT:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = parsed
    return _PARSED[key].model_copy(deep=True)


def _parse(config_path: Path, text: str) -> PerennialConfig:
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path}: expected a mapping at the top level")
    _resolve_relative(raw, config_path.resolve().parent)
    try:
        return PerennialConfig(**raw, config_path=config_path.resolve())
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: invalid config:{_describe(exc)}") from exc
