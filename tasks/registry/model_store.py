"""The model's files in the registry: logged with explicit requirements, hashed as the store
holds them, and loaded only after the hash matches the one recorded at registration."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.learn.device import xgboost_distribution
from tasks.registry.client import (
    TRAINING_KEY_TAG,
    VersionInfo,
    connect,
    experiment_id,
    find_by_training_key,
)
from tasks.registry.lineage import package_versions
from tasks.registry.locks import alias_lock

MODEL_SHA256_TAG = "perennial.model_sha256"
PIP_PACKAGES = ("scikit-learn", "pandas", "numpy")  # and the XGBoost build installed
# MLflow loggers that speak, at every registration, of requirement inference we do not use (the
# requirements are explicit): "Detected uv project" and "Failed to resolve installed pip version".
QUIETED_MLFLOW_LOGGERS = ("mlflow.utils.uv_utils", "mlflow.utils.environment")


class _KnownPickleWarning(logging.Filter):
    """Drops mlflow.sklearn's warning that cloudpickle runs code at load. We know: the model is
    cloudpickle on purpose, and every load checks the artifact's sha256 against the version's
    tag (MODEL_SHA256_TAG) first, so a swapped file is refused before it is unpickled."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "in the pickle or cloudpickle format" not in record.getMessage()


logging.getLogger("mlflow.sklearn").addFilter(_KnownPickleWarning())


@contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Raise the named loggers to ERROR for the duration of the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


class ModelIntegrityError(RuntimeError):
    """A model artifact whose bytes are not the ones Perennial registered: never loaded."""


def artifact_digest(folder: Path) -> str:
    """sha256 over every file of a model folder (relative path and content, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _download_version(config: PerennialConfig, version: str, into: Path) -> Path:
    """The version's model files exactly as the artifact store holds them (a `models:/` URI
    would add a file the client writes)."""
    import mlflow.artifacts

    client = connect(config)
    uri = client.get_model_version_download_uri(config.model_name, version)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into)))


def load_model(config: PerennialConfig, version: str) -> Any:
    """Version `version` from the registry: the only way Perennial loads a model. Its files are
    downloaded and checked against the sha256 recorded at registration before anything is
    unpickled; a mismatch, or a version Perennial did not register, is refused."""
    import tempfile

    import mlflow.sklearn

    client = connect(config)
    expected = client.get_model_version(config.model_name, version).tags.get(MODEL_SHA256_TAG)
    with tempfile.TemporaryDirectory(prefix="perennial-model-") as scratch:
        folder = _download_version(config, version, Path(scratch))
        found = artifact_digest(folder)
        if expected is None:
            raise ModelIntegrityError(
                f"v{version} of {config.model_name} has no {MODEL_SHA256_TAG} tag: it was not "
                "registered by Perennial, so it is not loaded; train or register it with Perennial"
            )
        if found != expected:
            raise ModelIntegrityError(
                f"v{version} of {config.model_name}: model artifact sha256 {found[:12]}... is not "
                f"the {expected[:12]}... recorded at registration: refusing to load a tampered "
                "artifact; roll back or retrain, and check who can write the artifact store"
            )
        return mlflow.sklearn.load_model(str(folder))


def pip_requirements(versions: dict[str, str]) -> list[str]:
    """The model's pip requirements: the installed XGBoost build (xgboost or xgboost-cpu, the
    same module) and the libraries the pipeline unpickles, at their versions here."""
    xgboost, installed = xgboost_distribution()
    return [f"{xgboost}=={installed}", *(f"{p}=={versions[p]}" for p in PIP_PACKAGES)]


def log_and_register(
    config: PerennialConfig,
    model: Any,
    x_example: pd.DataFrame,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    artifacts: dict[str, str],
    figures: dict[str, Path] | None = None,
) -> VersionInfo:
    """Log a run with the model (plus text artifacts and PNG figures under `search/`) and
    register it as a new version of the dataset's model, unless an identical training (same
    `perennial.training_key` tag) registered one meanwhile: checked again under the registry
    lock, so two machines that trained the same thing register one version between them."""
    import tempfile

    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    key = tags.get(TRAINING_KEY_TAG)
    with alias_lock(config):
        found = find_by_training_key(config, key) if key else None
        if found is not None:
            found.created = False
            return found
        client = connect(config)
        versions = package_versions()
        example = x_example.head(5)
        with mlflow.start_run(experiment_id=experiment_id(config, client)) as run:
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            for name, text in artifacts.items():
                mlflow.log_text(text, name)
            for path in (figures or {}).values():
                mlflow.log_artifact(str(path), artifact_path="search")
            with _quiet(QUIETED_MLFLOW_LOGGERS):
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(example, model.predict_proba(example)),
                    input_example=example,
                    # Explicit requirements: inferring them costs about 12 s per model.
                    pip_requirements=pip_requirements(versions),
                    serialization_format="cloudpickle",
                    registered_model_name=config.model_name,
                )
        version = str(info.registered_model_version)
        with tempfile.TemporaryDirectory(prefix="perennial-model-") as scratch:
            # Hash what the store holds, as `load_model` will download it.
            tags = {
                **tags,
                MODEL_SHA256_TAG: artifact_digest(
                    _download_version(config, version, Path(scratch))
                ),
            }
        for tag, value in tags.items():
            client.set_model_version_tag(config.model_name, version, tag, value)
        return VersionInfo(config.model_name, version, run.info.run_id, metrics, {}, tags)
