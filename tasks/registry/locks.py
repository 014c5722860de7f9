"""Registry locks: every move of a model's aliases is serialised across processes and
machines, on whatever the movers share (PostgreSQL, a local SQLite file, a Prefect server)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.core.config import PerennialConfig
from tasks.registry.client import RegistryError

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
