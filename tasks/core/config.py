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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_DATASET = "flights"
DEFAULT_CONFIG = DEFAULT_CONFIGS_DIR / f"{DEFAULT_DATASET}.yaml"
# A dataset name as flows, deployments and the UI take it: the stem of a YAML in the configs
# folder. Never a path: a UI parameter must not pick an arbitrary file on the worker. No '-'
# (and one case): the registered model is `<dataset>-<target>`, so the first '-' ends the
# dataset and `a-b` + `c` can never name the same model as `a` + `b-c`.
DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
DATASET_NAME_RULE = (
    "use lower-case letters, digits and '_' (no '-': the model is named <dataset>-<target>, "
    "so the first '-' must end the dataset name), e.g. flights or flight_delays"
)


TimeFeature = Literal["day_of_week", "day_of_month", "day_of_year", "hour", "month"]
GuardMetric = Literal["log_loss", "worst_slice_auc"]


def _default_guard_tolerance() -> dict[GuardMetric, float]:
    return {"log_loss": 0.01, "worst_slice_auc": 0.02}


def _default_guards() -> list[GuardMetric]:
    return ["log_loss", "worst_slice_auc"]


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JoinTable(_Strict):
    table: str = Field(description="File name of the table to join, beside the main table.")
    join_on: list[str] = Field(min_length=1, description="Key columns present in both tables.")
    columns: dict[str, str] = Field(
        description="Columns to take from the joined table, mapped to their new names."
    )


class SourceConfig(_Strict):
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


class TimeConfig(_Strict):
    column: str = Field(description="Timestamp column that places a row in a batch.")
    batch_period: Literal["month", "week", "day"] = "month"
    timezone: str = Field("UTC", description="Zone in which batch periods begin and end.")


class TargetConfig(_Strict):
    name: str = Field(description="Name of what is predicted; part of the registered model name.")
    column: str = Field(
        description="Raw column the label comes from; rows where it is null have no label."
    )
    expression: str = Field(
        description="Boolean label over columns, e.g. 'arr_delay > 15': comparisons, `in` "
        "lists, & | ~ and + - * / (tasks/core/expression.py); never evaluated as code."
    )
    task: Literal["binary"] = "binary"

    @field_validator("expression")
    @classmethod
    def _expression_in_grammar(cls, value: str) -> str:
        from tasks.core.expression import parse

        parse(value)  # ExpressionError (a ValueError) names the refused piece
        return value

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        # Lower case: model names and the storage folders named after them must not differ
        # only by case (a case-insensitive disk would merge them).
        if not TARGET_NAME.fullmatch(value):
            raise ValueError("use lower-case letters, digits, '-' and '_', e.g. late-arrival")
        return value


class FeaturesConfig(_Strict):
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


class SplitConfig(_Strict):
    min_train_batches: int = Field(
        1, ge=1, description="Batches needed before the validation batch."
    )
    max_train_rows: int | None = Field(
        None, ge=1000, description="Keep only the newest rows for training (None keeps all)."
    )
    refit_on_holdout: bool = Field(
        True,
        description="After the challenger is judged on the holdout, refit it with the same "
        "parameters on every fit batch plus the holdout (rounds scaled to the rows) and register "
        "that refit: the served model has seen the newest labelled batch.",
    )


class PromotionConfig(_Strict):
    min_improvement: float = Field(
        0.002, ge=0, description="Primary metric gain needed to promote."
    )
    primary_floor: float = Field(0.6, description="Absolute floor of the primary metric.")
    positive_rate_bounds: tuple[float, float] = Field(
        (0.01, 0.9), description="Sane range of the mean predicted probability."
    )
    guard_tolerance: dict[GuardMetric, float] = Field(
        default_factory=_default_guard_tolerance,
        description="How much each guard metric may worsen.",
    )
    slices: list[str] = Field(
        default_factory=list,
        description="Categorical features whose values form slices for the worst-slice guard.",
    )
    min_slice_rows: int = Field(200, ge=1, description="Smaller slices are ignored.")
    bootstrap_samples: int = Field(
        200, ge=0, description="Paired bootstrap resamples for the improvement's interval."
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    require_significant: bool = Field(
        False, description="Promote only if the interval's lower bound is above zero."
    )


class IntRange(_Strict):
    low: int
    high: int
    log: bool = False


class FloatRange(_Strict):
    low: float
    high: float
    log: bool = False


def _default_search_space() -> dict[str, IntRange | FloatRange]:
    return {
        "max_depth": IntRange(low=3, high=10),
        "learning_rate": FloatRange(low=0.02, high=0.3, log=True),
        "min_child_weight": FloatRange(low=1.0, high=50.0, log=True),
        "subsample": FloatRange(low=0.5, high=1.0),
        "colsample_bytree": FloatRange(low=0.5, high=1.0),
        "reg_lambda": FloatRange(low=0.01, high=10.0, log=True),
    }


# Most Optuna trials one search may run: a parameter typed in the UI (an extra zero or three)
# would otherwise hold the worker, and the training of its dataset, for days.
MAX_TRIALS = 10_000


def checked_trials(trials: int | None) -> int | None:
    """A run's `trials` parameter (from the CLI, the UI or a deployment): None (the dataset's
    `hpo.trials`) or 1 to MAX_TRIALS; anything else is refused in one line."""
    if trials is None:
        return None
    if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_TRIALS:
        raise ConfigError(
            f"trials {str(trials)[:40]}: give 1 to {MAX_TRIALS:,} trials per search, or leave "
            "it empty for the dataset's hpo.trials"
        )
    return trials


class HpoConfig(_Strict):
    trials: int = Field(20, ge=1, le=MAX_TRIALS)
    timeout_s: float | None = Field(None, gt=0, description="Wall-time budget of one search.")
    # How the search runs, not what it finds: excluded from dumps, so from the fingerprint and the
    # study name, so that machines with different layouts join the same study.
    # One worker per core by default. On the flights job (40 trials, holdout 2013-12, the same
    # 6 study names in each layout: `benchmarks/search_layout.py`) two one-thread workers
    # searched in 15 s (median) where one two-thread worker took 38 s, for the same holdout AUC
    # (mean 0.7115 vs 0.7097): the AUC follows the draw of Hyperband brackets, not the layout.
    workers: int | None = Field(
        None, ge=1, exclude=True, description="Parallel search workers (default: cores)."
    )
    threads_per_worker: int | None = Field(
        None,
        ge=1,
        exclude=True,
        description="XGBoost threads per worker (default: cores // workers).",
    )
    first_worker_index: int = Field(
        0,
        ge=0,
        exclude=True,
        description="Sampler seed offset of this machine's first worker: give each machine that "
        "joins a shared study its own (0, then 2, 4, ... with 2 workers each).",
    )
    pruner: Literal["hyperband", "median", "none"] = "hyperband"
    seed: int = 42
    max_rounds: int = Field(400, ge=10, description="Boosting rounds at most per trial.")
    early_stopping_rounds: int = Field(30, ge=1)
    search_space: dict[str, IntRange | FloatRange] = Field(default_factory=_default_search_space)


class TrainingConfig(_Strict):
    """Where the model trains: in this process, or on a Dask cluster (`xgboost.dask`); on the
    CPU, or on an NVIDIA GPU (the search and the final fit alike)."""

    engine: Literal["local", "dask"] = "local"
    device: Literal["cpu", "cuda"] = Field(
        "cpu",
        description="XGBoost's device. cuda needs the CUDA build (`uv sync --extra gpu`) and a "
        "GPU: without either, training is refused (tasks/learn/device.py).",
    )
    dask_scheduler: str | None = Field(
        None,
        description="Scheduler address of a running Dask cluster (tcp://host:8786, or tls:// "
        "with the security in Dask's config); none: a LocalCluster on 127.0.0.1 for the run.",
    )
    dask_workers: int = Field(2, ge=1, description="Workers of the run's own LocalCluster.")
    dask_threads_per_worker: int | None = Field(
        None, ge=1, description="Threads of each LocalCluster worker (default: cores // workers)."
    )


class ValidationConfig(_Strict):
    suite: str = Field(description="Name of the GE expectation suite in the GE project.")
    gx_root: Path = Field(Path("great_expectations"), description="Folder of the GE file context.")
    min_rows: int = Field(1, ge=0, description="Fewer rows than this in a batch fails the gate.")
    # Not `keys`: Prefect reads pydantic task inputs with dict(model), which calls .keys().
    key_columns: list[str] = Field(
        default_factory=list,
        description="Columns that identify a row: drafted as non-null and unique together.",
    )
    severity: dict[str, Literal["critical", "warning", "info"]] = Field(
        default_factory=dict,
        description="Severity overrides applied at gate time, keyed by expectation type "
        "(e.g. 'expect_column_values_to_be_in_set') or 'type:column' (the more specific wins).",
    )
    seasonal: list[str] = Field(
        default_factory=list,
        description="Columns whose centre moves with the seasons (weather, say): a median outside "
        "the reference's only warns; their relations to other columns still gate.",
    )
    reference_margin: float = Field(
        1.0,
        gt=0,
        description="Scales every margin by which a batch may leave the reference batches' own "
        "range (null share, far values, medians, relations, label rate) before it fails.",
    )
    max_file_mb: float = Field(
        1024.0,
        gt=0,
        description="Larger raw files (or their decompressed content) fail the file checks.",
    )
    max_line_bytes: int = Field(
        100_000, ge=64, description="A longer line means a broken file (e.g. lost newlines)."
    )
    data_docs: bool = Field(True, description="Build GE Data Docs under PERENNIAL_HOME/data_docs.")
    data_docs_keep: int = Field(
        50, ge=1, description="Validation pages kept in the Data Docs (older ones are pruned)."
    )


class DriftConfig(_Strict):
    """Drift monitor thresholds: PSI of each feature and of the champion's scores."""

    psi_warn: float = Field(0.1, ge=0, description="PSI from which a feature is reported.")
    psi_alert: float = Field(
        0.25, ge=0, description="PSI from which drift is alerted (event: retrain)."
    )
    bins: int = Field(10, ge=2, le=100, description="Quantile bins per numeric feature.")
    max_categories: int = Field(
        50, ge=1, description="Most frequent categories kept; the rest share one bin."
    )
    min_rows: int = Field(500, ge=1, description="Smaller batches are not judged.")
    auc_drop_alert: float = Field(
        0.05,
        gt=0,
        description="Champion AUC on a labelled batch this far below its holdout AUC alerts.",
    )
    weighted_psi_alert: float = Field(
        0.1,
        ge=0,
        description="Without labels, PSI weighted by the champion's use of each feature (mean "
        "|SHAP| shares) alerts from here, or from drift_factor x the reference's own drift.",
    )
    drift_factor: float = Field(
        2.0,
        gt=0,
        description="The weighted PSI alerts above this many times the largest of the "
        "reference's own recent batches (validation, holdout) against its fit rows.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Features not monitored (e.g. known seasonal ones)."
    )
    include_time_features: bool = Field(
        False,
        description="Monitor the features derived from the time column too (features.time). "
        "Off by default: one month against a year-long reference always drifts in `month`.",
    )
    label_shift_alert: float = Field(
        0.1,
        gt=0,
        le=1,
        description="A labelled batch whose positive rate is this far (absolute) from the "
        "reference's positive rate alerts (label drift).",
    )

    @model_validator(mode="after")
    def _warn_below_alert(self) -> DriftConfig:
        if self.psi_warn > self.psi_alert:
            raise ValueError("psi_warn must not exceed psi_alert")
        return self


class CostConfig(_Strict):
    """Prices that turn a run's measured CPU and memory into an estimated cost
    (tasks/registry/cost.py).
    Defaults: AWS Fargate on-demand, us-east-1, Linux/x86: $0.04048 per vCPU-hour and $0.004445
    per GB-hour, the rates quoted as current in June 2026 (unchanged since the January 2019 price
    cut). Check https://aws.amazon.com/fargate/pricing/ for your region and date."""

    vcpu_hour_usd: float = Field(0.04048, ge=0, description="Price of one vCPU for an hour.")
    gb_hour_usd: float = Field(0.004445, ge=0, description="Price of one GB of memory an hour.")
    prices_as_of: str = Field(
        "2026-06 (AWS Fargate us-east-1 Linux/x86 on-demand)",
        description="When and where the prices come from; shown beside every cost.",
    )


class ServeConfig(_Strict):
    """`perennial serve`: real-time scoring of the champion (and, optionally, the challenger)."""

    challenger_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of requests scored by the challenger (sticky by request key).",
    )
    poll_seconds: float = Field(
        10.0, gt=0, description="How often the registry aliases are checked for a new version."
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Score from which the label is 1.")
    max_rows: int = Field(1000, ge=1, description="Most rows one request may carry (more: 413).")
    max_body_kb: int = Field(
        1024,
        ge=1,
        description="Largest request body in KiB; a bigger one is refused (413) before parsing.",
    )
    live_sample_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of scored rows written to storage as live traffic (for the monitor).",
    )
    live_period: Literal["month", "week", "day"] | None = Field(
        None, description="Period of a live batch (default: the dataset's time.batch_period)."
    )
    live_flush_seconds: float = Field(
        60.0, gt=0, description="How often sampled rows are written out (and at shutdown)."
    )
    live_flush_rows: int = Field(
        10_000, ge=1, description="Sampled rows that trigger a write before the next flush."
    )
    docs: bool = Field(
        False,
        description="Serve /docs and /openapi.json (behind the token, when one is set).",
    )


ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


def _refuse_literal_secrets(data: Any, literal: str, names: str) -> Any:
    """A URL or password written in the YAML would sit in git and in every copy of the file."""
    if isinstance(data, dict) and literal in data:
        raise ValueError(
            f"a literal {literal} in the YAML is refused (it is a secret): put it in an "
            f"environment variable or a Prefect Secret block and name it with {names}"
        )
    return data


class _SecretNames(_Strict):
    """Where a secret is read at send time: an environment variable or a Prefect Secret block."""

    @staticmethod
    def _one_source(env: str | None, secret: str | None, what: str) -> None:
        if (env is None) == (secret is None):
            raise ValueError(f"name the {what} with exactly one of {what}_env or {what}_secret")
        # The value is not repeated: a URL pasted here by mistake is a secret.
        if env is not None and not ENV_NAME.fullmatch(env):
            raise ValueError(f"{what}_env is not an environment variable name (A-Z, 0-9, _)")
        if secret is not None and not BLOCK_NAME.fullmatch(secret):
            raise ValueError(f"{what}_secret is not a Prefect block name (a-z, 0-9, -)")


class WebhookChannel(_SecretNames):
    """A JSON POST: `webhook` (Perennial's own JSON), `slack` (incoming webhook) or `teams`
    (Workflows webhook, Adaptive Card). The URL is a secret: named here, never written."""

    kind: Literal["webhook", "slack", "teams"]
    url_env: str | None = Field(None, description="Environment variable holding the URL.")
    url_secret: str | None = Field(None, description="Prefect Secret block holding the URL.")

    @model_validator(mode="before")
    @classmethod
    def _no_literal_url(cls, data: Any) -> Any:
        return _refuse_literal_secrets(data, "url", "url_env or url_secret")

    @model_validator(mode="after")
    def _url_named_once(self) -> WebhookChannel:
        self._one_source(self.url_env, self.url_secret, "url")
        return self


class EmailChannel(_SecretNames):
    """Email over SMTP, sent from the flow that alerts (Prefect automations cannot send email:
    PrefectHQ/prefect#16881)."""

    kind: Literal["email"]
    host: str
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = Field(
        "starttls", description="starttls (port 587), ssl (port 465), or none (a local relay)."
    )
    sender: str = Field(description="The From address.")
    to: list[str] = Field(min_length=1)
    username: str | None = None
    password_env: str | None = Field(None, description="Environment variable of the password.")
    password_secret: str | None = Field(None, description="Prefect Secret block of it.")

    @model_validator(mode="before")
    @classmethod
    def _no_literal_password(cls, data: Any) -> Any:
        return _refuse_literal_secrets(data, "password", "password_env or password_secret")

    @model_validator(mode="after")
    def _password_with_username(self) -> EmailChannel:
        if self.username is not None:
            self._one_source(self.password_env, self.password_secret, "password")
        elif self.password_env or self.password_secret:
            raise ValueError("a password needs a username")
        return self


class AlertsConfig(_Strict):
    """Who is told when something needs a person. One alert per (dataset, kind, subject) within
    the window; a drift alert's retrain is de-duplicated over the same window."""

    channels: list[Annotated[WebhookChannel | EmailChannel, Field(discriminator="kind")]] = Field(
        default_factory=list
    )
    window_minutes: float = Field(
        60.0, gt=0, description="Repeats of an alert (and drift retrains) within this are dropped."
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
    primary_metric: Literal["roc_auc"] = "roc_auc"
    guard_metrics: list[GuardMetric] = Field(default_factory=_default_guards)
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
    config_path: Path | None = Field(None, exclude=True)

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
        blob = json.dumps(shaping, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


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
