"""The model in a real MLflow registry (SQLite, no server), with no pickle on the way: registered as
a model from code (booster UBJSON + encoder JSON), loaded by Perennial and by
`mlflow.pyfunc.load_model` with zero unpickling, signed with a key the registry does not hold,
hashed before the upload, and counted as registered only once its last tag is written. Every
refusal names the version."""

from __future__ import annotations

import logging
import pickle
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cloudpickle
import numpy as np
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.data.features import Datasets
from tasks.learn.scorer import Scorer
from tasks.learn.train import fit_model
from tasks.registry.client import (
    CHAMPION,
    TRAINING_KEY_TAG,
    connect,
    find_by_training_key,
    version_by_alias,
)
from tasks.registry.metrics import predict
from tasks.registry.model_signing import MODEL_HMAC_TAG, MODEL_SHA256_TAG
from tasks.registry.model_store import (
    ModelIntegrityError,
    PickledModelError,
    artifact_digest,
    load_model,
    log_and_register,
)
from tests.conftest import FLIGHTS
from tests.unit.test_tune import synthetic_datasets

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARAMS = {"max_depth": 4, "learning_rate": 0.2}
NAME = "flights-late-arrival"

# --- watching pickle ---------------------------------------------------------------------------

_UNPICKLED: list[str] | None = None  # collecting while a `pickle_watch` block runs


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _UNPICKLED is not None and event == "pickle.find_class":
        _UNPICKLED.append(f"find_class {args[0]}.{args[1]}")


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one only records inside a watch


@contextmanager
def pickle_watch() -> Iterator[list[str]]:
    """Every unpickling in the block: pickle's and cloudpickle's load, loads and Unpickler, and
    (an audit hook) every class an unpickler looks up."""
    global _UNPICKLED
    calls: list[str] = []

    def spy(name: str, real: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    with pytest.MonkeyPatch.context() as patch:
        for module, label in ((pickle, "pickle"), (cloudpickle, "cloudpickle")):
            for function in ("load", "loads", "Unpickler"):
                if hasattr(module, function):
                    patch.setattr(
                        module, function, spy(f"{label}.{function}", getattr(module, function))
                    )
        _UNPICKLED = calls
        try:
            yield calls
        finally:
            _UNPICKLED = None


# --- the registry ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> PerennialConfig:
    home = tmp_path_factory.mktemp("model-store")
    return load_config(FLIGHTS).model_copy(update={"home": str(home)})


@pytest.fixture(scope="module")
def data(config: PerennialConfig) -> Datasets:
    return synthetic_datasets(config, rows=2000, seed=4)


@pytest.fixture(scope="module")
def model(config: PerennialConfig, data: Datasets) -> Scorer:
    return fit_model(data.x_train, data.y_train, PARAMS, 40, config)


def register(config: PerennialConfig, model: Scorer, data: Datasets, key: str) -> str:
    found = log_and_register(config, model, data.x_holdout, {}, {}, {TRAINING_KEY_TAG: key}, {})
    assert found.created
    return found.version


def store_folder(config: PerennialConfig, version: str) -> Path:
    """The version's folder in the local artifact store (what an attacker with write access to
    the store would edit)."""
    uri = connect(config).get_model_version_download_uri(config.model_name, version)
    return Path(urlparse(uri).path)


def versions(config: PerennialConfig) -> list[str]:
    found = connect(config).search_model_versions(f"name = '{config.model_name}'")
    return sorted((str(v.version) for v in found), key=int)


@pytest.fixture(scope="module")
def champion(config: PerennialConfig, model: Scorer, data: Datasets) -> str:
    version = register(config, model, data, "champion")
    connect(config).set_registered_model_alias(config.model_name, CHAMPION, version)
    return version


@contextmanager
def tampered(path: Path) -> Iterator[None]:
    original = path.read_bytes()
    path.write_bytes(original + b"\x00")
    try:
        yield
    finally:
        path.write_bytes(original)


# --- no pickle ---------------------------------------------------------------------------------


def test_register_load_and_predict_unpickle_nothing(
    config: PerennialConfig,
    model: Scorer,
    data: Datasets,
    champion: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import mlflow.pyfunc

    capfd.readouterr()
    x = data.x_holdout
    with pickle_watch() as calls:
        version = register(config, model, data, "no-pickle")
        loaded = load_model(config, version)
        ours = predict(loaded, x)  # what `perennial predict` writes as champion_score
        theirs = mlflow.pyfunc.load_model(f"models:/{config.model_name}/{version}").predict(x)
        served = mlflow.pyfunc.load_model(f"models:/{config.model_name}@champion").predict(x)
    assert calls == []
    np.testing.assert_array_equal(ours, model.score(x))
    np.testing.assert_array_equal(np.asarray(theirs), ours)  # a probability, not a 0/1 label
    np.testing.assert_array_equal(np.asarray(served), predict(load_model(config, champion), x))
    assert ours.min() > 0 and ours.max() < 1 and len(np.unique(ours)) > 2
    output = capfd.readouterr()
    assert "pickle" not in output.out + output.err and "WARNING" not in output.err

    files = {
        p.relative_to(store_folder(config, version)).as_posix()
        for p in store_folder(config, version).rglob("*")
        if p.is_file()
    }
    assert {"MLmodel", "scorer.py", "artifacts/booster.ubj", "artifacts/encoder.json"} <= files
    assert {"input_example.json", "requirements.txt"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib"))], files
    assert "uv.lock" not in files  # the project's lock is not the model's environment
    requirements = (store_folder(config, version) / "requirements.txt").read_text()
    assert "xgboost" in requirements and "scikit-learn" not in requirements


def test_the_pyfunc_enforces_its_json_signature(
    config: PerennialConfig, data: Datasets, champion: str
) -> None:
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    loaded = mlflow.pyfunc.load_model(f"models:/{config.model_name}@champion")
    inputs = loaded.metadata.get_input_schema().input_names()
    assert inputs == list(data.x_holdout.columns)
    with pytest.raises(MlflowException, match="carrier"):
        loaded.predict(data.x_holdout.drop(columns=["carrier"]))


# --- refusals ----------------------------------------------------------------------------------


def test_a_pickled_version_of_an_earlier_perennial_is_refused_unopened(
    config: PerennialConfig, champion: str
) -> None:
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    old = LogisticRegression().fit(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            old,
            name="model",
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn"],
            registered_model_name=config.model_name,
        )
    version = str(info.registered_model_version)
    digest = artifact_digest(store_folder(config, version))  # as the earlier Perennial tagged it
    connect(config).set_model_version_tag(config.model_name, version, MODEL_SHA256_TAG, digest)
    with pickle_watch() as calls, pytest.raises(PickledModelError) as refused:
        load_model(config, version)
    assert calls == []
    message = str(refused.value)
    assert "\n" not in message
    assert f"v{version} of {NAME} is a pickled model (model.pkl)" in message
    assert "retrain with `perennial train --config" in message


def test_a_tampered_booster_with_its_registry_tags_intact_is_refused(
    config: PerennialConfig, champion: str
) -> None:
    booster = store_folder(config, champion) / "artifacts" / "booster.ubj"
    with tampered(booster), pytest.raises(ModelIntegrityError) as refused:
        load_model(config, champion)
    assert str(refused.value).startswith(f"v{champion} of {NAME}: model artifact sha256")
    assert "refusing to load a tampered artifact" in str(refused.value)
    assert load_model(config, champion) is not None  # as registered: loads again


def test_serve_refuses_a_tampered_champion_naming_the_version(
    config: PerennialConfig, champion: str, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    from flows.serve import create_app

    with (
        tampered(store_folder(config, champion) / "artifacts" / "encoder.json"),
        caplog.at_level(logging.ERROR, logger="perennial.serve"),
        TestClient(create_app(config)) as client,  # its own poller and loader
    ):
        health = client.get("/health")
    assert health.status_code == 503
    refusals = [r.getMessage() for r in caplog.records if "not swapped in" in r.getMessage()]
    assert refusals and f"v{champion} of {NAME}" in refusals[0] and "tampered" in refusals[0]


def test_a_digest_tag_rewritten_without_the_key_is_refused(
    config: PerennialConfig, champion: str
) -> None:
    client = connect(config)
    recorded = client.get_model_version(config.model_name, champion).tags[MODEL_SHA256_TAG]
    folder = store_folder(config, champion)
    with tampered(folder / "artifacts" / "booster.ubj"):
        # A registry user who can write tags but has no key: the digest of the files they
        # swapped in, written where Perennial reads it.
        forged = artifact_digest(folder)
        client.set_model_version_tag(config.model_name, champion, MODEL_SHA256_TAG, forged)
        try:
            with pytest.raises(ModelIntegrityError) as refused:
                load_model(config, champion)
        finally:
            client.set_model_version_tag(config.model_name, champion, MODEL_SHA256_TAG, recorded)
    assert f"v{champion} of {NAME}: its {MODEL_HMAC_TAG} does not sign" in str(refused.value)


def test_tags_and_files_copied_from_another_version_are_refused(
    config: PerennialConfig, model: Scorer, data: Datasets, champion: str
) -> None:
    other = register(config, model, data, "copy-target")
    client = connect(config)
    tags = client.get_model_version(config.model_name, champion).tags
    shutil.rmtree(store_folder(config, other))
    shutil.copytree(store_folder(config, champion), store_folder(config, other))
    for tag in (MODEL_SHA256_TAG, MODEL_HMAC_TAG):
        client.set_model_version_tag(config.model_name, other, tag, tags[tag])
    with pytest.raises(ModelIntegrityError, match=f"v{other} of {NAME}: its {MODEL_HMAC_TAG}"):
        load_model(config, other)


# --- registration ------------------------------------------------------------------------------


def test_bytes_the_store_changed_on_upload_fail_the_registration(
    config: PerennialConfig,
    model: Scorer,
    data: Datasets,
    champion: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mlflow.pyfunc

    real = mlflow.pyfunc.log_model

    def corrupting_store(*args: Any, **kwargs: Any) -> Any:
        info = real(*args, **kwargs)
        location = connect(config).get_logged_model(info.model_id).artifact_location
        booster = Path(urlparse(location).path) / "artifacts" / "booster.ubj"
        booster.write_bytes(booster.read_bytes()[:-1])
        return info

    monkeypatch.setattr(mlflow.pyfunc, "log_model", corrupting_store)
    before = versions(config)
    with pytest.raises(
        ModelIntegrityError, match=r"returned artifacts/booster\.ubj .* other bytes"
    ):
        register(config, model, data, "corrupted-upload")
    assert versions(config) == before  # nothing registered
    champion_now = version_by_alias(config, CHAMPION)
    assert champion_now is not None and champion_now.version == champion
    assert find_by_training_key(config, "corrupted-upload") is None


def test_a_version_whose_registration_stopped_before_its_last_tag_does_not_block_a_rerun(
    config: PerennialConfig, model: Scorer, data: Datasets, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    real = mlflow.MlflowClient.set_model_version_tag

    def crash_before_the_hmac(self: Any, name: str, version: str, key: str, value: Any) -> Any:
        if key == MODEL_HMAC_TAG:
            raise RuntimeError("the process died here")
        return real(self, name, version, key, value)

    with monkeypatch.context() as patch:
        patch.setattr(mlflow.MlflowClient, "set_model_version_tag", crash_before_the_hmac)
        with pytest.raises(RuntimeError, match="died"):
            register(config, model, data, "crashed")
    half = versions(config)[-1]
    tags = connect(config).get_model_version(config.model_name, half).tags
    assert tags[TRAINING_KEY_TAG] == "crashed" and MODEL_HMAC_TAG not in tags
    with pytest.raises(ModelIntegrityError, match=f"v{half} of {NAME} has no {MODEL_HMAC_TAG}"):
        load_model(config, half)

    assert find_by_training_key(config, "crashed") is None  # a rerun finds nothing to resume
    rerun = log_and_register(
        config, model, data.x_holdout, {}, {}, {TRAINING_KEY_TAG: "crashed"}, {}
    )
    assert rerun.created and int(rerun.version) > int(half)
    assert load_model(config, rerun.version) is not None
    found = find_by_training_key(config, "crashed")
    assert found is not None and found.version == rerun.version


def test_training_over_a_pickled_champion_judges_its_challenger_as_a_first_model(
    config: PerennialConfig, model: Scorer, data: Datasets
) -> None:
    from tasks.registry.evaluate import compare_task
    from tasks.registry.registration import load_champion_task

    client = connect(config)
    pickled = next(
        v
        for v in versions(config)
        if "model.pkl" in {p.name for p in store_folder(config, v).iterdir()}
    )
    current = version_by_alias(config, CHAMPION)
    assert current is not None
    client.set_registered_model_alias(config.model_name, CHAMPION, pickled)
    try:
        champion, champion_model = load_champion_task.fn(config)
        assert champion is not None and champion.version == pickled and champion_model is None
        comparison = compare_task.fn(model, None, champion, data, config)
    finally:
        client.set_registered_model_alias(config.model_name, CHAMPION, current.version)
    assert comparison.champion is None
    assert comparison.decision.reasons[0].startswith(f"champion v{pickled} is a pickled model")
    assert comparison.decision.reasons[1].startswith("first model")
