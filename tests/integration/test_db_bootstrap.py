"""infra/modules/compute/db_bootstrap.py (the db-bootstrap ECS task) against the local PostgreSQL.

The "master" here is, as on RDS, no superuser: a login role with CREATEROLE and CREATEDB. The
script runs as ECS runs it (`python -c <file>`, PG* variables, one password variable per service).
Then each service user must be able to migrate its own back end (Prefect, with its pg_trgm
extension; MLflow; Optuna) in its own database, and to connect to no other. It also creates
MLflow's basic-auth users of modules/settings in MLflow's auth database; the MLflow server,
started with the container command and auth config of modules/compute, then lets flow runs
change the registry and serve only read it. Every role and database is suffixed and dropped
afterwards.
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
    mlflow_auth = f"mlflow_auth_{suffix}"
    with superuser() as conn:
        conn.execute(f"CREATE ROLE {master} LOGIN CREATEROLE CREATEDB")
        # RDS creates the initial database (db_name) owned by the master user.
        conn.execute(f"CREATE DATABASE prefect_{suffix} OWNER {master}")
    try:
        yield {"master": master, "services": services, "mlflow_auth": mlflow_auth}
    finally:
        with superuser() as conn:
            for name in [*(db["database"] for db in services.values()), mlflow_auth]:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            for db in services.values():
                conn.execute(f"DROP ROLE IF EXISTS {db['username']}")
            conn.execute(f"DROP ROLE IF EXISTS {master}")


def mlflow_users() -> dict[str, dict[str, Any]]:
    """MLflow's users as modules/settings declares them (python-hcl2, as the unit tests read it)."""
    from tests.unit.test_infra import MODULES, locals_of

    return locals_of(MODULES / "settings" / "main.tf")["mlflow_users"]


def mlflow_auth_db(cluster: dict[str, Any]) -> dict[str, str]:
    owner = cluster["services"]["mlflow"]["username"]
    return {
        "username": owner,
        "database": cluster["mlflow_auth"],
        "password_env": "PERENNIAL_DB_PASSWORD_MLFLOW",
    }


def bootstrap(cluster: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    """The script as the ECS task runs it (modules/compute db_bootstrap), with fresh passwords:
    the services' databases and MLflow's auth database, then MLflow's users."""
    passwords = {service: secrets.token_urlsafe(30) for service in cluster["services"]}
    users = mlflow_users()
    user_passwords = {user["password_env"]: secrets.token_urlsafe(30) for user in users.values()}
    auth_db = mlflow_auth_db(cluster)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PGHOST": HOST,
        "PGPORT": str(PORT),
        "PGUSER": cluster["master"],
        "PGPASSWORD": "unused-with-trust-auth",
        "PERENNIAL_DB_SERVICES": json.dumps(
            [
                *(
                    {**db, "password_env": f"PERENNIAL_DB_PASSWORD_{service.upper()}"}
                    for service, db in cluster["services"].items()
                ),
                auth_db,
            ]
        ),
        "PERENNIAL_MLFLOW_AUTH_DB": json.dumps(auth_db),
        "PERENNIAL_MLFLOW_USERS": json.dumps(
            [
                {key: user[key] for key in ("username", "admin", "permission", "password_env")}
                for user in users.values()
            ]
        ),
        **{f"PERENNIAL_DB_PASSWORD_{s.upper()}": p for s, p in passwords.items()},
        **user_passwords,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.read_text()],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done, passwords | user_passwords


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
    assert done.stdout.count("owns database") == 4  # and MLflow's auth database
    assert done.stdout.count("MLflow user ") == 3
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


# --- MLflow's basic-auth users, with the MLflow container of modules/compute ----------------


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def hcl_string(raw: str) -> str:
    """A string as Terraform reads it: python-hcl2 keeps the escapes (\\\\ and \\")."""
    return json.loads(f'"{raw}"')


def mlflow_container(cluster: dict[str, Any], passwords: dict[str, str], tmp_path: Path) -> Any:
    """The MLflow service's command and environment from modules/compute, on this machine: its
    database and auth database here, artifacts in tmp_path, loopback and a free port."""
    import textwrap

    from tests.unit.test_infra import MODULES, locals_of

    compute = locals_of(MODULES / "compute" / "main.tf")
    service = locals_of(MODULES / "compute" / "services.tf")["services"]["mlflow"]
    heredoc = compute["mlflow_auth_config"].splitlines()[1:-1]  # drop <<-INI and INI
    config = textwrap.dedent("\n".join(heredoc)) + "\n"
    config = config.replace("${var.names.mlflow_auth_db_name}", cluster["mlflow_auth"])
    owner = cluster["services"]["mlflow"]
    port = free_port()
    values = {
        "${local.ports.mlflow}": str(port),
        "${tostring(local.ports.mlflow)}": str(port),
        "${local.pg_url.mlflow}": f"{owner['username']}@{HOST}:{PORT}/{owner['database']}",
        "s3://${var.artifacts_bucket}/mlflow": str(tmp_path / "artifacts"),
        "0.0.0.0": HOST,
        "sslmode=require": "sslmode=disable",  # the local PostgreSQL has no TLS
    }
    command = []
    for part in service["command"]:
        part = hcl_string(part)
        for template, value in values.items():
            part = part.replace(template, value)
        command.append(part)
    users = mlflow_users()
    admin = users["admin"]
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "mlflow-auth.ini"),
        "PERENNIAL_MLFLOW_AUTH_CONFIG": config,
        # What ECS injects: the PG* of the mlflow service, its secrets.
        "PGHOST": HOST,
        "PGPORT": str(PORT),
        "PGUSER": owner["username"],
        "PGPASSWORD": passwords["mlflow"],
        "MLFLOW_AUTH_ADMIN_USERNAME": admin["username"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": passwords[admin["password_env"]],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32),
    }
    return command, env, f"http://{HOST}:{port}"


QUIET_MLFLOW = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def test_mlflow_serve_user_reads_the_registry_and_changes_nothing(
    cluster: dict[str, Any], tmp_path: Path
) -> None:
    import time

    import httpx

    from tests.conftest import stop_process

    _, passwords = bootstrap(cluster)
    command, env, url = mlflow_container(cluster, passwords, tmp_path)
    assert command[:2] == ["sh", "-c"] and "--app-name" in command
    log = (tmp_path / "mlflow.log").open("wb")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (tmp_path / "mlflow.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "MLflow not healthy after 240 s"
            time.sleep(1)  # polling /health until the server answers
        config = (tmp_path / "mlflow-auth.ini").read_text()
        assert "default_permission = NO_PERMISSIONS" in config
        assert oct((tmp_path / "mlflow-auth.ini").stat().st_mode & 0o777) == "0o600"
        users = mlflow_users()
        credentials = {
            role: (user["username"], passwords[user["password_env"]])
            for role, user in users.items()
        }
        client = [sys.executable, "-c", MLFLOW_CLIENT, url]
        done = subprocess.run(
            client,
            input=json.dumps(credentials),
            env={
                "PATH": os.environ["PATH"],
                "HOME": str(tmp_path),
                "MLFLOW_DISABLE_TELEMETRY": "true",
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        outcome = json.loads(done.stdout.strip().splitlines()[-1])
        assert outcome == {
            "anonymous search": "UNAUTHENTICATED",
            "flow_run registers and moves champion": "ok",
            "serve reads champion": "ok",
            "serve loads champion": "ok",
            "serve moves champion": "PERMISSION_DENIED",
            "serve tags the model": "PERMISSION_DENIED",
            "serve registers a version": "PERMISSION_DENIED",
            "serve logs a run": "PERMISSION_DENIED",
            "flow_run creates a user": "PERMISSION_DENIED",
        }
    finally:
        stop_process(server, grace_s=20)
        log.close()


# Run in its own process: the MLflow client reads its credentials from the environment.
MLFLOW_CLIENT = """
import json, os, sys
import numpy as np
import mlflow
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

url, credentials = sys.argv[1], json.loads(sys.stdin.read())
MODEL, outcome = "flights-late-arrival", {}

def sign_in(role):
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)
    if role is not None:
        user, password = credentials[role]
        os.environ["MLFLOW_TRACKING_USERNAME"] = user
        os.environ["MLFLOW_TRACKING_PASSWORD"] = password
    mlflow.set_tracking_uri(url)
    return MlflowClient(url)

def attempt(label, action):
    try:
        action()
        outcome[label] = "ok"
    except MlflowException as error:
        outcome[label] = error.error_code

attempt("anonymous search", lambda: sign_in(None).search_registered_models())

client = sign_in("flow_run")
mlflow.set_experiment("flights")
from sklearn.linear_model import LogisticRegression
fitted = LogisticRegression().fit(np.array([[0.0], [1.0]]), [0, 1])
with mlflow.start_run() as run:
    logged = mlflow.sklearn.log_model(fitted, name="model")

def register_and_promote():
    version = mlflow.register_model(logged.model_uri, MODEL)
    client.set_registered_model_alias(MODEL, "champion", version.version)

attempt("flow_run registers and moves champion", register_and_promote)

client = sign_in("serve")
experiment = client.get_experiment_by_name("flights").experiment_id
attempt("serve reads champion", lambda: client.get_model_version_by_alias(MODEL, "champion"))
attempt("serve loads champion", lambda: mlflow.pyfunc.load_model(f"models:/{MODEL}@champion"))
attempt("serve moves champion", lambda: client.set_registered_model_alias(MODEL, "champion", "1"))
attempt("serve tags the model", lambda: client.set_registered_model_tag(MODEL, "k", "v"))
attempt(
    "serve registers a version",
    lambda: client.create_model_version(MODEL, logged.model_uri, run_id=run.info.run_id),
)
attempt("serve logs a run", lambda: client.create_run(experiment))

reply = requests.post(
    url + "/api/2.0/mlflow/users/create",
    json={"username": "intruder", "password": "x" * 24},
    auth=tuple(credentials["flow_run"]),
    timeout=30,
)
denied = reply.status_code == 403
outcome["flow_run creates a user"] = "PERMISSION_DENIED" if denied else str(reply.status_code)
print(json.dumps(outcome))
"""
