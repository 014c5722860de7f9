"""Served mode on PostgreSQL: `PERENNIAL_DB_URL=postgresql://…` makes `make up` create
and use one database for Prefect and one for MLflow on the machine's PostgreSQL. Checked in the
databases themselves: the deployments, a flow run the worker ran, an MLflow experiment.

The databases get a fresh name per test and are dropped afterwards; the service is stopped by
the PIDs it recorded.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import (
    process_command_lines,
    process_environment,
    run_console_script,
    served_stack,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
# The machine's PostgreSQL trusts local connections, so any password works: this one must
# appear nowhere on disk (but for files only the user can read) nor in any command line.
PASSWORD = f"pw-{uuid.uuid4().hex}"


def query(database: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/{database}") as connection:
        return list(connection.execute(sql).fetchall())


@pytest.fixture(scope="module")
def postgres_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    psycopg = pytest.importorskip("psycopg")
    base = f"perennial_e2e_{uuid.uuid4().hex[:10]}"
    home = tmp_path_factory.mktemp("served-postgres") / "home"
    try:
        with_password = POSTGRES.replace("postgres@", f"postgres:{PASSWORD}@")
        with served_stack(home, PERENNIAL_DB_URL=f"{with_password}/{base}") as state:
            yield {**state, "base": base, "home_path": home}
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            for name in (f"{base}_prefect", f"{base}_mlflow"):
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_prefect_and_mlflow_keep_their_state_in_postgresql(
    postgres_service: dict[str, Any],
) -> None:
    base = postgres_service["base"]
    assert postgres_service["databases"] == {
        "prefect": f"127.0.0.1:5432/{base}_prefect",
        "mlflow": f"127.0.0.1:5432/{base}_mlflow",
    }
    deployments = {name for (name,) in query(f"{base}_prefect", "SELECT name FROM deployment")}
    assert deployments == {"flights"}  # one of each flow, named for the dataset
    flows = {name for (name,) in query(f"{base}_prefect", "SELECT name FROM flow")}
    assert flows >= {"training", "monitoring", "inference", "ingestion"}
    pools = {name for (name,) in query(f"{base}_prefect", "SELECT name FROM work_pool")}
    assert "perennial" in pools

    # A flow run through the worker, recorded in PostgreSQL.
    run = ["deployment", "run", "ingestion/flights", "--param", "batch=2013-01"]
    finished = run_console_script(
        "prefect", postgres_service["env"], *run, "--watch", "--watch-timeout", "600", timeout=700
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    states = query(
        f"{base}_prefect",
        "SELECT fr.state_type FROM flow_run fr JOIN deployment d ON fr.deployment_id = d.id "
        "WHERE d.name = 'flights' AND d.entrypoint LIKE 'flows/ingestion.py%'",
    )
    assert states == [("COMPLETED",)]
    assert (postgres_service["home_path"] / "validated" / "flights" / "2013-01.parquet").exists()

    # Perennial registers and promotes through the MLflow server, which keeps it in PostgreSQL.
    trained = run_console_script(
        "perennial",
        {**postgres_service["env"], "PERENNIAL_HPO__TRIALS": "2", "PERENNIAL_HPO__WORKERS": "1"},
        *("train", "--batches", "2013-01..2013-03", "--json"),
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    aliases = query(f"{base}_mlflow", "SELECT name, alias, version FROM registered_model_aliases")
    assert aliases == [("flights-late-arrival", "champion", 1)]
    tags = dict(
        query(
            f"{base}_mlflow",
            "SELECT key, value FROM model_version_tags WHERE name = 'flights-late-arrival'",
        )
    )
    assert len(tags["perennial.model_sha256"]) == 64 and tags["perennial.decision"] == "promoted"
    assert len(tags["perennial.model_hmac"]) == 64  # signed with the stack's key


def test_the_database_password_is_nowhere_but_in_the_servers_environment(
    postgres_service: dict[str, Any],
) -> None:

    home = postgres_service["home_path"]
    leaks = []
    for path in home.rglob("*"):
        if path.is_file() and PASSWORD.encode() in path.read_bytes():
            leaks.append(f"{path} ({oct(path.stat().st_mode & 0o777)})")
    assert not leaks, leaks  # not even in 0600 files: it is handed over as PGPASSWORD
    command_lines = process_command_lines()
    assert PASSWORD not in command_lines
    # In the environment of the two servers only: never the worker's, whose flow runs run any
    # dataset YAML's alert channels, nor a scoring service's.
    holding = sorted(
        name
        for name, entry in postgres_service["processes"].items()
        if PASSWORD in process_environment(entry["pid"]).values()
    )
    assert holding == ["mlflow-server", "prefect-server"]
    status = run_console_script(
        "python",
        postgres_service["env"],
        "-m",
        "flows.supervision.served_stack",
        "status",
        timeout=120,
    )
    assert status.returncode == 0 and "127.0.0.1:5432" in status.stdout
    assert PASSWORD not in status.stdout + status.stderr
