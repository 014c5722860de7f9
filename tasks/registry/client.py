"""The MLflow registry as Perennial reaches it: one client per tracking URI, the dataset's
experiment, versions by number, by alias and by training key, and text or files on a run.

Registered model `<dataset>-<target>`; aliases only (stages are deprecated)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.config import PerennialConfig
from tasks.registry.model_signing import is_signed

CHAMPION, CHALLENGER = "champion", "challenger"


@dataclass
class VersionInfo:
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    created: bool = True  # False: an identical training had registered it already


def connect(config: PerennialConfig) -> Any:
    """Point MLflow at the config's tracking server / SQLite file and return a client."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow prints "View run ... at <server>" on stdout, which breaks `--json` output.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Model downloads (checked by hash at every load) would draw a progress bar each time.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # A model's requirements are explicit: no copy of the project's uv.lock in its folder.
    os.environ.setdefault("MLFLOW_UV_AUTO_DETECT", "false")
    import mlflow

    if config.mlflow_uri is None:
        Path(config.home).mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(config.tracking_uri)
    mlflow.set_registry_uri(config.tracking_uri)
    uri = config.tracking_uri
    database = Path(uri.removeprefix("sqlite:///"))
    if not uri.startswith("sqlite:///") or not database.parent.is_dir():
        return mlflow.MlflowClient(uri, uri)  # a missing folder: MLflow names it itself
    with _first_use_lock(database):
        from tasks.core.private_state import private_file

        private_file(database)  # before SQLite makes it (and its WAL) with the umask's mode
        client = mlflow.MlflowClient(uri, uri)
        client.search_experiments(max_results=1)  # creates the tracking tables if new
        client.search_registered_models(max_results=1)  # ... and the registry's
    return client


@contextmanager
def _first_use_lock(database: Path) -> Iterator[None]:
    """MLflow creates its tables on a new SQLite file at first use; two commands doing that at
    once (two first commands on a fresh home) made the second fail with "table ... already
    exists". Under a lock beside the file, the first creates them and the next finds them."""
    import fcntl

    from tasks.core.private_state import private_file

    with open(private_file(database.with_name(database.name + ".lock")), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def experiment_id(config: PerennialConfig, client: Any) -> str:
    """The dataset's experiment; local back ends keep artifacts in home, never in the cwd."""
    existing = client.get_experiment_by_name(config.dataset)
    if existing is not None:
        return str(existing.experiment_id)
    location = None
    if config.mlflow_uri is None:
        location = (Path(config.home) / "mlartifacts").resolve().as_uri()
    elif config.home.startswith("s3://") and not config.mlflow_uri.startswith(
        ("http://", "https://")
    ):
        # A database tracking URI with an S3 home: artifacts beside the data, never in the cwd.
        # (An MLflow server decides for itself: --artifacts-destination.)
        location = f"s3://{config.home.removeprefix('s3://').split('/', 1)[0]}/mlflow"
    return str(client.create_experiment(config.dataset, artifact_location=location))


def version_by_alias(config: PerennialConfig, alias: str) -> VersionInfo | None:
    from mlflow.exceptions import MlflowException

    client = connect(config)
    try:
        found = client.get_model_version_by_alias(config.model_name, alias)
    except MlflowException as exc:
        # Only "no such alias / model" means none: a server error must not read as "no
        # champion", or the first-model rule would promote with no comparison.
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return _info(config, client, found)


def version_info(config: PerennialConfig, version: str) -> VersionInfo:
    """A registered version by number (MLflow's error if there is none)."""
    client = connect(config)
    return _info(config, client, client.get_model_version(config.model_name, version))


def _info(config: PerennialConfig, client: Any, found: Any) -> VersionInfo:
    run = client.get_run(found.run_id)
    return VersionInfo(
        name=config.model_name,
        version=str(found.version),
        run_id=found.run_id,
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(found.tags),
    )


class RegistryError(RuntimeError):
    """A registry action that cannot be done (no champion, nothing to roll back to, ...)."""


TRAINING_KEY_TAG = "perennial.training_key"


def find_by_training_key(config: PerennialConfig, key: str) -> VersionInfo | None:
    """The version an identical training run (same data, config, seed, trials) registered. A
    version whose registration stopped before its last tags (`is_signed`) does not count: a
    rerun trains and registers anew rather than find a version no one can load."""
    from mlflow.exceptions import MlflowException

    client = connect(config)
    try:
        found = client.search_model_versions(
            f"name = '{config.model_name}' and tags.`{TRAINING_KEY_TAG}` = '{key}'"
        )
    except MlflowException:
        return None
    found = [each for each in found if is_signed(dict(each.tags))]
    if not found:
        return None
    first = min(found, key=lambda v: int(v.version))
    run = client.get_run(first.run_id)
    return VersionInfo(
        config.model_name,
        str(first.version),
        first.run_id,
        dict(run.data.metrics),
        dict(run.data.params),
        dict(first.tags),
    )


def log_text(config: PerennialConfig, run_id: str, text: str, name: str) -> None:
    connect(config).log_text(run_id, text, name)


def log_file(config: PerennialConfig, run_id: str, path: Path, folder: str) -> None:
    connect(config).log_artifact(run_id, str(path), folder)
