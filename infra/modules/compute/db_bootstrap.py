"""Create the PostgreSQL user and database of each Perennial service (the db-bootstrap ECS task).

Runs as the master user (PGHOST, PGUSER, PGPASSWORD, ... from the task definition). For every
entry of PERENNIAL_DB_SERVICES (JSON: [{"username", "database", "password_env"}, ...]) it creates
the login role, or sets its password again after a rotation; creates the database owned by that
role (or hands an existing one over); and revokes PUBLIC's privileges on it, so each service can
connect to its own database only. Passwords are sent as SCRAM verifiers computed here, so the
statement log (log_statement = ddl) never holds one.

Then, with PERENNIAL_MLFLOW_USERS (JSON: [{"username", "admin", "permission", "password_env"}]),
it creates MLflow's basic-auth users, or sets their passwords again, in MLflow's auth database
(PERENNIAL_MLFLOW_AUTH_DB: {"username", "database", "password_env"}), through MLflow's own auth
store and as that database's owner, so that the MLflow server can use the tables it migrates. A
user with a permission (READ, EDIT) gets it on every experiment and registered model; the
server's `default_permission` gives nobody anything else.

Idempotent: rerun it after any change of users or passwords (infra/README.md).
infra/modules/compute/services.tf passes this file to `python -c`;
tests/integration/test_db_bootstrap.py runs it against a local PostgreSQL.
"""

from __future__ import annotations

import json
import os

import psycopg
from psycopg import sql


def bootstrap(conn: psycopg.Connection, services: list[dict[str, str]]) -> list[str]:
    done = []
    for service in services:
        user, database = service["username"], service["database"]
        password = os.environ[service["password_env"]]
        verifier = conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256")
        role, db = sql.Identifier(user), sql.Identifier(database)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        # No SUPERUSER/CREATEDB/CREATEROLE (the defaults); naming even NOSUPERUSER needs a
        # superuser, which RDS's master user is not.
        conn.execute(
            sql.SQL(verb + " ROLE {} WITH LOGIN PASSWORD {}").format(
                role, sql.Literal(verifier.decode())
            )
        )
        # RDS's master user is no superuser: it may give a database only to a role it belongs to.
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(role))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, role))
        else:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        done.append(f"{user} owns database {database}")
    return done


MLFLOW_RESOURCES = ("experiment", "registered_model")


def auth_database_url(auth_db: dict[str, str]) -> str:
    """SQLAlchemy URL of MLflow's auth database as its owner: host, port and TLS from the PG*
    variables, the password from the owner's variable. Kept in this process, never printed."""
    from sqlalchemy.engine import URL

    port = os.environ.get("PGPORT")
    sslmode = os.environ.get("PGSSLMODE")
    url = URL.create(
        "postgresql",
        username=auth_db["username"],
        password=os.environ[auth_db["password_env"]],
        host=os.environ.get("PGHOST"),
        port=int(port) if port else None,
        database=auth_db["database"],
        query={"sslmode": sslmode} if sslmode else {},
    )
    return url.render_as_string(hide_password=False)


def bootstrap_mlflow_users(auth_db: dict[str, str], users: list[dict]) -> list[str]:
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore()
    store.init_db(auth_database_url(auth_db))  # migrates MLflow's auth tables
    done = []
    try:
        for user in users:
            name, password = user["username"], os.environ[user["password_env"]]
            if store.has_user(name, use_primary=True):
                store.update_user(name, password=password, is_admin=user["admin"])
            else:
                store.create_user(name, password, is_admin=user["admin"])
            if user["permission"]:
                for resource in MLFLOW_RESOURCES:
                    store.grant_user_permission(name, resource, "*", user["permission"])
            grant = f"{user['permission']} on every experiment and registered model"
            done.append(f"MLflow user {name}: {'admin' if user['admin'] else grant}")
    finally:
        store.engine.dispose()
    return done


def main() -> None:
    services = json.loads(os.environ["PERENNIAL_DB_SERVICES"])
    admin_db = os.environ.get("PERENNIAL_DB_ADMIN_DATABASE", "postgres")
    with psycopg.connect(dbname=admin_db, autocommit=True) as conn:
        for line in bootstrap(conn, services):
            print(line, flush=True)
    if os.environ.get("PERENNIAL_MLFLOW_USERS"):
        auth_db = json.loads(os.environ["PERENNIAL_MLFLOW_AUTH_DB"])
        users = json.loads(os.environ["PERENNIAL_MLFLOW_USERS"])
        for line in bootstrap_mlflow_users(auth_db, users):
            print(line, flush=True)


if __name__ == "__main__":
    main()
