"""Create the PostgreSQL user and database of each Perennial service (the db-bootstrap ECS task).

Runs as the master user (PGHOST, PGUSER, PGPASSWORD, ... from the task definition). For every
entry of PERENNIAL_DB_SERVICES (JSON: [{"username", "database", "password_env"}, ...]) it creates
the login role, or sets its password again after a rotation; creates the database owned by that
role (or hands an existing one over); and revokes PUBLIC's privileges on it, so each service can
connect to its own database only. Passwords are sent as SCRAM verifiers computed here, so the
statement log (log_statement = ddl) never holds one. Idempotent: rerun it after any change of
users or passwords (infra/README.md). infra/modules/compute/services.tf passes this file to
`python -c`; tests/integration/test_db_bootstrap.py runs it against a local PostgreSQL.
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


def main() -> None:
    services = json.loads(os.environ["PERENNIAL_DB_SERVICES"])
    admin_db = os.environ.get("PERENNIAL_DB_ADMIN_DATABASE", "postgres")
    with psycopg.connect(dbname=admin_db, autocommit=True) as conn:
        for line in bootstrap(conn, services):
            print(line, flush=True)


if __name__ == "__main__":
    main()
