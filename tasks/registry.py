"""Registry: MLflow runs, registered versions and the `champion` / `challenger` aliases.

Registered model `<dataset>-<target>`; aliases only (stages are deprecated). A new version is
registered and tagged first, and the `champion` alias is moved last, so a crash in between
leaves the old champion serving.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.alerts import alert_champion_moved
from tasks.config import PerennialConfig
from tasks.device import xgboost_distribution
from tasks.evaluate import Decision, Metrics
from tasks.lineage import package_versions

CHAMPION, CHALLENGER = "champion", "challenger"
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


@dataclass
class VersionInfo:
    name: str
    version: str
    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]
    created: bool = True  # False: an identical training had registered it already


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


def connect(config: PerennialConfig) -> Any:
    """Point MLflow at the config's tracking server / SQLite file and return a client."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow prints "View run ... at <server>" on stdout, which breaks `--json` output.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Model downloads (checked by hash at every load) would draw a progress bar each time.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
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
        from tasks.storage import private_file

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

    from tasks.storage import private_file

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


TRAINING_KEY_TAG = "perennial.training_key"


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


class RegistryError(RuntimeError):
    """A registry action that cannot be done (no champion, nothing to roll back to, ...)."""


REGISTRY_LOCK_TIMEOUT_S = 600.0  # a training decision holds it for seconds; wait, then refuse
REGISTRY_LEASE_S = 60.0  # a killed holder's slot on the Prefect server frees itself after this


def registry_lock_name(config: PerennialConfig) -> str:
    return f"perennial-registry-{config.model_name}"


@contextmanager
def alias_lock(config: PerennialConfig) -> Iterator[str]:
    """Serialise every alias move of the model, across processes and machines. Yields the kind
    of lock held. On what all movers share:
    - an MLflow database on PostgreSQL: a session advisory lock in that database;
    - a local SQLite registry: a file lock beside it;
    - an MLflow server (served mode): a global concurrency limit of one slot on the Prefect
      server of PREFECT_API_URL, leased, so that a killed holder frees it.
    A remote MLflow with neither is refused: nothing would serialise the moves."""
    uri = config.tracking_uri
    if uri.startswith(("postgresql://", "postgresql+")):
        with _postgres_advisory_lock(uri, registry_lock_name(config)):
            yield "postgresql advisory lock"
    elif uri.startswith("sqlite:///"):
        with _file_lock(Path(uri.removeprefix("sqlite:///")).with_name(".registry.lock")):
            yield "file lock"
    elif os.environ.get("PREFECT_API_URL"):
        with _prefect_slot(registry_lock_name(config)):
            yield "prefect global concurrency limit"
    else:
        raise RegistryError(
            f"no lock shared by every machine for {config.model_name} at {uri}: set "
            "PREFECT_API_URL to the served Prefect API (or use a postgresql:// registry)"
        )


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _postgres_advisory_lock(url: str, name: str) -> Iterator[None]:
    import psycopg

    plain = "postgresql://" + url.split("://", 1)[1]  # the driver suffix means nothing here
    # A session lock: the server frees it if this process dies and its connection drops.
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("SET lock_timeout = %s", (f"{int(REGISTRY_LOCK_TIMEOUT_S)}s",))
        connection.execute("SELECT pg_advisory_lock(hashtext(%s))", (name,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(hashtext(%s))", (name,))


@contextmanager
def _prefect_slot(name: str) -> Iterator[None]:
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, 1)  # idempotent
    with concurrency(
        name,
        occupy=1,
        timeout_seconds=REGISTRY_LOCK_TIMEOUT_S,
        lease_duration=REGISTRY_LEASE_S,
        strict=True,
    ):
        yield


def _decision_tags(
    decision: Decision,
    challenger: Metrics,
    champion: Metrics | None,
    compared_with: str | None,
    moved_by: str,
) -> dict[str, str]:
    return {
        "perennial.decision": "promoted" if decision.promote else "rejected",
        "perennial.decision_reasons": json.dumps(decision.reasons),
        "perennial.decision_numbers": json.dumps(
            {
                "challenger": challenger.as_dict(),
                "champion": champion.as_dict() if champion else None,
                "deltas": decision.deltas,
                "interval": decision.interval,
            }
        ),
        "perennial.compared_with": compared_with or "none",
        "perennial.moved_by": moved_by,
        "perennial.decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def record_decision(
    config: PerennialConfig,
    version: str,
    decision: Decision,
    challenger: Metrics,
    champion: Metrics | None,
    champion_version: str | None,
    moved_by: str,
) -> Decision:
    """Tag the version with the decision, then move the alias it earned (champion last).

    Under the registry lock: if the champion changed while this version was being evaluated
    (another run promoted, or a rollback, meanwhile), the comparison is stale: the version is
    not promoted and says why."""
    client = connect(config)
    name = config.model_name
    with alias_lock(config):
        current = version_by_alias(config, CHAMPION)
        current_version = current.version if current else None
        if decision.promote and current_version != champion_version:
            moved = (
                f"champion moved to v{current_version} during evaluation "
                f"(compared with {champion_version or 'none'}): compare again before promoting"
            )
            decision = Decision(
                False,
                [*decision.reasons, moved],
                decision.deltas,
                decision.interval,
                [*decision.blockers, moved],
            )
        tags = _decision_tags(decision, challenger, champion, champion_version, moved_by)
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if not decision.promote:
            client.set_registered_model_alias(name, CHALLENGER, version)
            return decision
        _move_champion(config, version, current_version, "train", moved_by, decision.reasons)
    # Told after the lock is released: a slow channel must not hold every other alias move.
    alert_champion_moved(config, "train", version, current_version, moved_by, decision.reasons)
    return decision


HISTORY_TAG = "perennial.champion_history"
HISTORY_LENGTH = 100
MOVES_TAG = "perennial.champion_moves"
MOVES_LENGTH = 200  # about 250 bytes each; a registered-model tag holds 100,000


def champion_history(client: Any, name: str) -> list[str]:
    """Versions that have been champion, oldest first, as moved by Perennial: the stack that
    `rollback` pops. Kept on the registered model, not derived from per-version tags: an old
    version promoted again would otherwise make a cycle of `replaced_version` tags."""
    tags = client.get_registered_model(name).tags
    return list(json.loads(tags.get(HISTORY_TAG, "[]")))


def champion_moves(client: Any, name: str) -> list[dict[str, str | None]]:
    """Every move of `champion`, oldest first (train, promote, rollback): the audit log, each
    entry with what it moved from and to, who moved it, why, and when."""
    tags = client.get_registered_model(name).tags
    return list(json.loads(tags.get(MOVES_TAG, "[]")))


def _move_champion(
    config: PerennialConfig,
    version: str,
    previous: str | None,
    action: str,
    moved_by: str,
    reasons: list[str],
    history: list[str] | None = None,
) -> None:
    """Point `champion` at `version` and record the move; the caller holds the registry lock
    and has checked that `previous` is the champion now. `history` is the rollback stack after
    the move (default: `version` pushed)."""
    client = connect(config)
    name = config.model_name
    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
    if action != "rollback":
        if previous and previous != version:
            client.set_model_version_tag(name, version, "perennial.replaced_version", previous)
        client.set_model_version_tag(name, version, "perennial.promoted_by", moved_by)
    if history is None:
        history = champion_history(client, name)
        if previous and (not history or history[-1] != previous):
            history.append(previous)
        history = [*history, version]
    move = {"action": action, "from": previous, "to": version, "by": moved_by, "at": stamp}
    moves = [*champion_moves(client, name), {**move, "reasons": "; ".join(reasons)[:200]}]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_LENGTH:]))
    client.set_registered_model_tag(name, MOVES_TAG, json.dumps(moves[-MOVES_LENGTH:]))
    client.set_registered_model_alias(name, CHAMPION, version)  # the move itself, last
    if action != "rollback":
        challenger = version_by_alias(config, CHALLENGER)
        if challenger and challenger.version == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    emit_model_event(config, version, previous, moved_by, reasons)


def emit_model_event(
    config: PerennialConfig, version: str, previous: str | None, moved_by: str, reasons: list[str]
) -> None:
    from prefect.events import emit_event

    emit_event(
        event="perennial.model.promoted",
        resource={"prefect.resource.id": f"perennial.model.{config.model_name}"},
        related=[
            {
                "prefect.resource.id": f"perennial.dataset.{config.dataset}",
                "prefect.resource.role": "dataset",
            }
        ],
        payload={
            "model": config.model_name,
            "version": version,
            "previous": previous,
            "moved_by": moved_by,
            "reasons": reasons,
        },
    )


def promote_version(
    config: PerennialConfig,
    version: str,
    moved_by: str,
    reasons: list[str],
    compared_with: str | None,
    forced: bool = False,
) -> str | None:
    """Make `version` champion by hand. The caller checked the policy against the champion
    `compared_with`; under the lock, a champion that has moved since makes that check stale
    and the promotion is refused (a forced one goes ahead, and says what it overrode).
    Returns the previous champion."""
    client = connect(config)
    client.get_model_version(config.model_name, version)  # raises if it does not exist
    with alias_lock(config):
        current = version_by_alias(config, CHAMPION)
        previous = current.version if current else None
        if previous == version:
            raise RegistryError(f"v{version} of {config.model_name} is already the champion")
        if previous != compared_with:
            stale = (
                f"champion moved to v{previous} while v{version} was checked against "
                f"v{compared_with or 'none'}"
            )
            if not forced:
                raise RegistryError(f"{stale}: run `perennial promote` again to compare anew")
            reasons = [*reasons, f"{stale} (forced)"]
        client.set_model_version_tag(
            config.model_name, version, "perennial.manual_promotion", json.dumps(reasons)
        )
        _move_champion(config, version, previous, "promote", moved_by, reasons)
    alert_champion_moved(config, "promote", version, previous, moved_by, reasons)
    return previous


def rollback(config: PerennialConfig, moved_by: str) -> tuple[str, str]:
    """Point `champion` back to the version it replaced (the one before it in the champion
    history). Returns (from_version, to_version)."""
    client = connect(config)
    name = config.model_name
    with alias_lock(config):
        current = version_by_alias(config, CHAMPION)
        if current is None:
            raise RegistryError(
                f"{name} has no champion: nothing to roll back (train one with `perennial train`)"
            )
        history = champion_history(client, name)
        if not history or history[-1] != current.version:
            raise RegistryError(
                f"champion v{current.version} of {name} was not set by Perennial (history "
                f"{history}): point the alias by hand with `perennial promote --version N`"
            )
        if len(history) < 2:
            raise RegistryError(
                f"champion v{current.version} of {name} replaced no earlier version: "
                "nothing to roll back to"
            )
        previous = history[-2]
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        client.set_model_version_tag(
            name,
            current.version,
            "perennial.rolled_back",
            f"{stamp} by {moved_by}: champion returned to v{previous}",
        )
        client.set_model_version_tag(name, previous, "perennial.restored_from", current.version)
        _move_champion(
            config,
            previous,
            current.version,
            "rollback",
            moved_by,
            [f"rollback from v{current.version}"],
            history=history[:-1],
        )
    alert_champion_moved(
        config,
        "rollback",
        previous,
        current.version,
        moved_by,
        [f"rollback from v{current.version}"],
    )
    return current.version, previous


def find_by_training_key(config: PerennialConfig, key: str) -> VersionInfo | None:
    """The version an identical training run (same data, config, seed, trials) registered."""
    from mlflow.exceptions import MlflowException

    client = connect(config)
    try:
        found = client.search_model_versions(
            f"name = '{config.model_name}' and tags.`{TRAINING_KEY_TAG}` = '{key}'"
        )
    except MlflowException:
        return None
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


def recent_decisions(config: PerennialConfig, limit: int = 5) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    client = connect(config)
    try:
        found = client.search_model_versions(f"name = '{config.model_name}'")
    except MlflowException:
        return []
    newest = sorted(found, key=lambda v: int(v.version), reverse=True)[:limit]
    return [
        {
            "version": str(v.version),
            "decision": v.tags.get("perennial.decision", "pending"),
            "reasons": json.loads(v.tags.get("perennial.decision_reasons", "[]")),
            "batches": v.tags.get("perennial.batches", ""),
        }
        for v in newest
    ]
