"""infra/modules/compute/db_bootstrap.py (the db-bootstrap ECS task) against the local PostgreSQL.

The "master" here is, as on RDS, no superuser: a login role with CREATEROLE and CREATEDB. The
script runs as ECS runs it (`python -c <file>`, PG* variables, one password variable per service).
Then each service user must be able to migrate its own back end (Prefect, with its pg_trgm
extension; MLflow; Optuna) in its own database, and to connect to no other. Every role and
database is suffixed and dropped afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

psycopg = pytest.importorskip("psycopg")

SCRIPT = ROOT / "infra" / "modules" / "compute" / "db_bootstrap.py"
HOST, PORT, SUPERUSER = "127.0.0.1", 5432, "postgres"
BIN = Path(sys.executable).parent


def superuser(dbname: str = "postgres") -> Any:
    return psycopg.connect(host=HOST, port=PORT, user=SUPERUSER, dbname=dbname, autocommit=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, Any]]:
    try:
        superuser().close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no local PostgreSQL at {HOST}:{PORT}: {exc}")
    suffix = secrets.token_hex(3)
    master = f"pbt_master_{suffix}"
    services = {
        "prefect_server": {"username": f"prefect_server_{suffix}", "database": f"prefect_{suffix}"},
        "mlflow": {"username": f"mlflow_server_{suffix}", "database": f"mlflow_{suffix}"},
        "flow_run": {"username": f"flow_run_{suffix}", "database": f"optuna_{suffix}"},
    }
    with superuser() as conn:
        conn.execute(f"CREATE ROLE {master} LOGIN CREATEROLE CREATEDB")
        # RDS creates the initial database (db_name) owned by the master user.
        conn.execute(f"CREATE DATABASE prefect_{suffix} OWNER {master}")
    try:
        yield {"master": master, "services": services}
    finally:
        with superuser() as conn:
            for db in services.values():
                conn.execute(f"DROP DATABASE IF EXISTS {db['database']} WITH (FORCE)")
            for db in services.values():
                conn.execute(f"DROP ROLE IF EXISTS {db['username']}")
            conn.execute(f"DROP ROLE IF EXISTS {master}")


def bootstrap(cluster: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The script as the ECS task runs it, with fresh passwords."""
    passwords = {service: secrets.token_urlsafe(30) for service in cluster["services"]}
    env = {
        "PATH": os.environ["PATH"],
        "PGHOST": HOST,
        "PGPORT": str(PORT),
        "PGUSER": cluster["master"],
        "PGPASSWORD": "unused-with-trust-auth",
        "PERENNIAL_DB_SERVICES": json.dumps(
            [
                {**db, "password_env": f"PERENNIAL_DB_PASSWORD_{service.upper()}"}
                for service, db in cluster["services"].items()
            ]
        ),
        **{f"PERENNIAL_DB_PASSWORD_{s.upper()}": p for s, p in passwords.items()},
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, passwords


def verifiers(cluster: dict[str, Any]) -> dict[str, str]:
    users = [db["username"] for db in cluster["services"].values()]
    with superuser() as conn:
        rows = conn.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)", (users,)
        ).fetchall()
    return dict(rows)


def test_bootstrap_makes_one_unprivileged_owner_per_database(cluster: dict[str, Any]) -> None:
    done, passwords = bootstrap(cluster)
    services = cluster["services"]
    assert done.stdout.count("owns database") == 3
    for password in passwords.values():
        assert password not in done.stdout + done.stderr
    with superuser() as conn:
        for service, db in services.items():
            role = conn.execute(
                "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles"
                " WHERE rolname = %s",
                (db["username"],),
            ).fetchone()
            assert role == (True, False, False, False), service
            owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                (db["database"],),
            ).fetchone()
            assert owner == (db["username"],), service  # the RDS initial database handed over
            for other in services.values():
                can = conn.execute(
                    "SELECT has_database_privilege(%s, %s, 'CONNECT')",
                    (other["username"], db["database"]),
                ).fetchone()[0]
                assert can == (other is db), (other["username"], db["database"])
    first = verifiers(cluster)
    assert all(v.startswith("SCRAM-SHA-256$") for v in first.values()), first

    # A rotation: the same run with new passwords updates every role, and nothing else fails.
    bootstrap(cluster)
    second = verifiers(cluster)
    assert set(second) == set(first) and all(second[u] != first[u] for u in first)


def test_each_user_migrates_its_own_back_end_and_reaches_no_other(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    if not verifiers(cluster):
        bootstrap(cluster)
    services = cluster["services"]

    def url(service: str, driver: str) -> str:
        db = services[service]
        return f"postgresql+{driver}://{db['username']}@{HOST}:{PORT}/{db['database']}"

    # Prefect's migrations (they create the pg_trgm extension) as the prefect_server user.
    prefect_home = tmp_path / "prefect"
    prefect_home.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_DATABASE_CONNECTION_URL": url("prefect_server", "asyncpg"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    upgraded = subprocess.run(
        [str(BIN / "prefect"), "server", "database", "upgrade", "-y"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert upgraded.returncode == 0, upgraded.stdout[-2000:] + upgraded.stderr[-2000:]

    # MLflow's migrations as the mlflow_server user, Optuna's tables as flow_run.
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(url("mlflow", "psycopg"), str(tmp_path / "artifacts"))
    assert store.get_experiment("0").name == "Default"
    store.engine.dispose()

    import optuna

    storage = optuna.storages.RDBStorage(url("flow_run", "psycopg"))
    study = optuna.create_study(study_name="bootstrap", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert len(study.trials) == 2
    storage.engine.dispose()

    # Cross access is refused: flow_run cannot even connect to the Prefect database.
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            host=HOST,
            port=PORT,
            user=services["flow_run"]["username"],
            dbname=services["prefect_server"]["database"],
        )
