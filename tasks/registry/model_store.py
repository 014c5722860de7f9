"""The model's files in the registry, with no pickle anywhere on the way: logged as MLflow's
"model from code" (`tasks/learn/scorer.py` with the booster's UBJSON and the encoder's JSON),
hashed before the upload and again as the store returns them, signed (`model_signing`), and
loaded only after the signature and the hash hold, by Perennial's own reader of those two files.

The folder of a version holds: MLmodel, `scorer.py` (the code `mlflow.pyfunc.load_model` runs),
`artifacts/booster.ubj`, `artifacts/encoder.json`, the input examples (JSON) and the environment
files (requirements.txt, conda.yaml, python_env.yaml). Versions registered by an earlier
Perennial, pickled scikit-learn pipelines, are refused with the command that replaces them."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

import tasks.learn.scorer as scorer_code
from tasks.core.config import PerennialConfig
from tasks.learn.device import xgboost_distribution
from tasks.learn.scorer import BOOSTER_FILE, ENCODER_FILE, ModelFileError, Scorer
from tasks.registry.client import (
    TRAINING_KEY_TAG,
    VersionInfo,
    connect,
    experiment_id,
    find_by_training_key,
)
from tasks.registry.lineage import package_versions
from tasks.registry.locks import alias_lock
from tasks.registry.model_signing import (
    MODEL_HMAC_TAG,
    MODEL_SHA256_TAG,
    hmac_holds,
    model_hmac,
    signing_key,
)

PIP_PACKAGES = ("pandas", "numpy")  # and the XGBoost build installed: what scorer.py imports
CODE_FILE = Path(scorer_code.__file__)
ARTIFACTS = "artifacts"  # where MLflow puts a pyfunc's `artifacts=` in the model's folder
PICKLE_SUFFIXES = (".pkl", ".pickle", ".cloudpickle", ".joblib")
# Files MLflow's readers write into a model's folder (see `artifact_digest`).
REGISTERED_MODEL_META, BYTECODE_CACHE = "registered_model_meta", "__pycache__"
# MLflow loggers that speak at every registration, and the level they are raised to meanwhile:
# requirement inference we do not use (the requirements are explicit: "Failed to resolve
# installed pip version"), and "Validating input example against model signature" (INFO).
QUIETED_MLFLOW_LOGGERS = {
    "mlflow.utils.environment": logging.ERROR,
    "mlflow.pyfunc": logging.WARNING,
}


@contextmanager
def _quiet(levels: dict[str, int]) -> Iterator[None]:
    """Raise the named loggers to their given level for the duration of the block."""
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    before = {each: each.level for each in loggers}
    for each, level in loggers.items():
        each.setLevel(level)
    try:
        yield
    finally:
        for each, level in before.items():
            each.setLevel(level)


class ModelIntegrityError(RuntimeError):
    """A model version Perennial will not load (or did not register): the message names it."""


class PickledModelError(ModelIntegrityError):
    """A version registered by an earlier Perennial as a pickled scikit-learn pipeline."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def artifact_digest(folder: Path) -> str:
    """sha256 over every file of a model folder (relative path and content, in sorted order),
    but what MLflow's readers write into it: `mlflow.pyfunc.load_model("models:/...")` on a local
    store loads the folder in place, writing `registered_model_meta` there and, as it runs
    `scorer.py`, Python's `__pycache__/`. Perennial reads neither, nor runs the store's code."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not _written_by_readers(p)):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _written_by_readers(path: Path) -> bool:
    return path.name == REGISTERED_MODEL_META or BYTECODE_CACHE in path.parts


def _download(uri: str, into: Path) -> Path:
    """The files at `uri` exactly as the artifact store holds them (a `models:/` URI would add
    a file the client writes)."""
    import mlflow.artifacts

    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into)))


def _version_files(config: PerennialConfig, version: str, into: Path) -> Path:
    uri = connect(config).get_model_version_download_uri(config.model_name, version)
    return _download(uri, into)


def _refuse_pickles(config: PerennialConfig, version: str, folder: Path) -> None:
    pickled = [p.name for p in folder.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    if pickled:
        where = config.config_path or f"configs/{config.dataset}.yaml"
        raise PickledModelError(
            f"v{version} of {config.model_name} is a pickled model ({', '.join(sorted(pickled))})"
            " registered by an earlier Perennial, which loads no pickle: retrain with "
            f"`perennial train --config {where}`; its new version replaces this one"
        )


def check_version_files(
    config: PerennialConfig, version: str, tags: dict[str, str], folder: Path, key: bytes
) -> None:
    """Refuse, naming the version, unless `folder` holds the files Perennial registered as
    `version`: no pickle, both tags, an HMAC of the recorded digest made with `key`, and files
    that hash to that digest."""
    _refuse_pickles(config, version, folder)
    name = f"v{version} of {config.model_name}"
    recorded, signature = tags.get(MODEL_SHA256_TAG), tags.get(MODEL_HMAC_TAG)
    if recorded is None or signature is None:
        missing = MODEL_SHA256_TAG if recorded is None else MODEL_HMAC_TAG
        raise ModelIntegrityError(
            f"{name} has no {missing} tag: Perennial did not register it, or its registration "
            "stopped before the end, so it is not loaded; retrain (`perennial train`)"
        )
    if not hmac_holds(key, config.model_name, version, recorded, signature):
        raise ModelIntegrityError(
            f"{name}: its {MODEL_HMAC_TAG} does not sign its {MODEL_SHA256_TAG} with this "
            "signing key: the tags were rewritten or copied by someone without the key (or the "
            "key changed), so it is not loaded; roll back or retrain, and check who can write "
            "the registry"
        )
    found = artifact_digest(folder)
    if found != recorded:
        raise ModelIntegrityError(
            f"{name}: model artifact sha256 {found[:12]}... is not the {recorded[:12]}... "
            "recorded at registration: refusing to load a tampered artifact; roll back or "
            "retrain, and check who can write the artifact store"
        )


def load_model(config: PerennialConfig, version: str) -> Scorer:
    """Version `version` from the registry: the only way Perennial loads a model. Its files are
    downloaded and checked (`check_version_files`) before the booster and the encoder's state
    are read, by this checkout's `Scorer.read`: no code from the store runs, nothing is
    unpickled."""
    key = signing_key(config)
    tags = dict(connect(config).get_model_version(config.model_name, version).tags)
    with tempfile.TemporaryDirectory(prefix="perennial-model-") as scratch:
        folder = _version_files(config, version, Path(scratch))
        check_version_files(config, version, tags, folder, key)
        try:
            return Scorer.read(folder / ARTIFACTS / BOOSTER_FILE, folder / ARTIFACTS / ENCODER_FILE)
        except (OSError, ModelFileError) as exc:
            raise ModelIntegrityError(
                f"v{version} of {config.model_name} is signed but unreadable ({exc}): retrain"
            ) from None


def pip_requirements(versions: dict[str, str]) -> list[str]:
    """The model's pip requirements: the installed XGBoost build (xgboost or xgboost-cpu, the
    same module) and the libraries `scorer.py` imports, at their versions here (MLflow adds
    itself)."""
    xgboost, installed = xgboost_distribution()
    return [f"{xgboost}=={installed}", *(f"{p}=={versions[p]}" for p in PIP_PACKAGES)]


def _log_model_files(
    config: PerennialConfig, model: Scorer, example: pd.DataFrame, scratch: Path
) -> tuple[Any, Path]:
    """Log the model in the active run, and check that the store holds the bytes sent: the
    (ModelInfo, its folder as the store returns it)."""
    import mlflow.pyfunc
    from mlflow.models import infer_signature

    files = model.write(scratch / "sent")
    sent = {f"{ARTIFACTS}/{path.name}": file_sha256(path) for path in files.values()}
    sent[CODE_FILE.name] = file_sha256(CODE_FILE)
    with _quiet(QUIETED_MLFLOW_LOGGERS):
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(CODE_FILE),
            artifacts={role: str(path) for role, path in files.items()},
            signature=infer_signature(example, model.pyfunc_output(example)),
            input_example=example,
            # Explicit requirements: inferring them costs about 12 s per model.
            pip_requirements=pip_requirements(package_versions()),
        )
    # Where the store keeps the logged model's files: what its versions will download.
    location = str(connect(config).get_logged_model(info.model_id).artifact_location)
    stored = _download(location, scratch / "stored")
    changed = [
        name
        for name, digest in sorted(sent.items())
        if not (stored / name).is_file() or file_sha256(stored / name) != digest
    ]
    if changed:
        raise ModelIntegrityError(
            f"the artifact store returned {', '.join(changed)} of the new model with other bytes "
            f"than were sent ({location}): nothing registered, the champion is unchanged; check "
            "the artifact store and who can write it, then run again"
        )
    return info, stored


def log_and_register(
    config: PerennialConfig,
    model: Scorer | None,
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
    lock, so two machines that trained the same thing register one version between them.

    The version is created with every tag but its HMAC, which is written last: a version without
    it counts as never registered (`find_by_training_key` skips it, `load_model` refuses it)."""
    import mlflow

    key = signing_key(config)
    training_key = tags.get(TRAINING_KEY_TAG)
    with alias_lock(config):
        found = find_by_training_key(config, training_key) if training_key else None
        if found is not None:
            found.created = False
            return found
        if model is None:
            raise ValueError("no model to register")
        client = connect(config)
        with (
            tempfile.TemporaryDirectory(prefix="perennial-model-") as scratch,
            mlflow.start_run(experiment_id=experiment_id(config, client)) as run,
        ):
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            mlflow.set_tags(tags)
            for name, text in artifacts.items():
                mlflow.log_text(text, name)
            for path in (figures or {}).values():
                mlflow.log_artifact(str(path), artifact_path="search")
            info, stored = _log_model_files(config, model, x_example.head(5), Path(scratch))
            tags = {**tags, MODEL_SHA256_TAG: artifact_digest(stored)}
        registered = mlflow.register_model(info.model_uri, config.model_name, tags=tags)
        version = str(registered.version)
        signature = model_hmac(key, config.model_name, version, tags[MODEL_SHA256_TAG])
        client.set_model_version_tag(config.model_name, version, MODEL_HMAC_TAG, signature)
        tags[MODEL_HMAC_TAG] = signature
        return VersionInfo(config.model_name, version, run.info.run_id, metrics, {}, tags)
