"""Served mode's plain parts: deployments rendered per dataset, private state files, URLs
without passwords (the stack itself runs in tests/e2e)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.supervision.deployments import render_deployments, served_datasets
from flows.supervision.processes import write_private
from flows.supervision.served_settings import (
    SIGNING_KEY,
    ServiceError,
    create_databases,
    credentials,
    database_password,
    database_urls,
    sourceable_env,
)
from tests.conftest import FLIGHTS, ROOT


def test_each_dataset_gets_its_own_deployments_and_drift_trigger() -> None:
    rendered = yaml.safe_load(
        render_deployments((ROOT / "prefect.yaml").read_text(), ["flights", "sensors"])
    )
    names = [(d["entrypoint"].split(":")[1], d["name"]) for d in rendered["deployments"]]
    for flow in ("training", "monitoring", "inference", "ingestion"):
        assert (flow, "flights") in names and (flow, "sensors") in names
    for deployment in rendered["deployments"]:
        assert deployment["parameters"]["dataset"] == deployment["name"]
        assert "config_path" not in deployment["parameters"]
    trainings = [d for d in rendered["deployments"] if d["entrypoint"].endswith(":training")]
    for deployment in trainings:
        [trigger] = deployment["triggers"]
        name = deployment["name"]
        assert trigger["match"] == {"prefect.resource.id": f"perennial.dataset.{name}"}
        assert trigger["parameters"]["dataset"] == name
    assert "${dataset}" not in yaml.safe_dump(rendered)


def test_a_config_whose_name_differs_from_its_file_is_not_served(tmp_path: Path) -> None:
    (tmp_path / "flights.yaml").write_text(FLIGHTS.read_text())
    assert served_datasets(tmp_path) == ["flights"]
    (tmp_path / "other.yaml").write_text(FLIGHTS.read_text())
    with pytest.raises(ServiceError, match="names dataset 'flights': rename the file"):
        served_datasets(tmp_path)


def test_state_files_are_written_for_the_user_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_private(tmp_path / "state.json", "{}")
        secret = credentials(tmp_path)
    finally:
        os.umask(previous)
    assert (tmp_path / "state.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "run" / "credentials.env").stat().st_mode & 0o777 == 0o600
    assert len(secret["PREFECT_API_AUTH_STRING"]) >= 32
    assert credentials(tmp_path) == secret  # generated once, then kept


def test_database_urls_never_carry_the_password(tmp_path: Path) -> None:
    url = "postgresql://team:s3cret-pw@db.internal:5433/perennial"
    urls = database_urls(url, tmp_path)
    assert urls == {
        "prefect": "postgresql+asyncpg://team@db.internal:5433/perennial_prefect",
        "mlflow": "postgresql://team@db.internal:5433/perennial_mlflow",
    }
    assert database_password(url) == "s3cret-pw"
    with pytest.raises(ServiceError) as refused:
        database_urls("mysql://team:s3cret-pw@db/x", tmp_path)
    assert "s3cret-pw" not in str(refused.value)


def test_run_env_is_sourced_as_text_never_run(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    home = f"{tmp_path}/my home $(touch {canary}) `touch {canary}` it's"
    env_file = tmp_path / "env"
    env_file.write_text(sourceable_env({"PERENNIAL_HOME": home, "PREFECT_API_URL": "http://x/api"}))
    shown = subprocess.run(
        ["bash", "-c", f'set -a; . "{env_file}"; set +a; printf %s "$PERENNIAL_HOME"'],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert shown.stdout == home and not canary.exists()


def test_database_names_are_quoted_by_psycopg(monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg

    statements: list[str] = []

    class Connection:
        def __enter__(self) -> Connection:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def execute(self, statement: Any, params: Any = None) -> Any:
            if params is None:  # the CREATE: rendered as the server would receive it
                rendered = statement if isinstance(statement, str) else statement.as_string(None)
                statements.append(rendered)
            return self

        def fetchone(self) -> None:
            return None  # no database of that name yet

    monkeypatch.setattr(psycopg, "connect", lambda *_args, **_kwargs: Connection())
    create_databases({"mlflow": 'postgresql://u@127.0.0.1/x"; DROP DATABASE prod; --'}, None)
    assert statements == ['CREATE DATABASE "x""; DROP DATABASE prod; --"']


def test_the_model_signing_key_reaches_the_worker_serve_and_cli_never_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.supervision.served_stack as stack

    started: dict[str, dict[str, Any]] = {}

    def spawn(name: str, command: list[str], env: dict[str, str], logs: Path) -> dict[str, Any]:
        started[name] = {"command": command, "env": env}
        return {"pid": 0, "name": name}

    monkeypatch.setattr(stack, "spawn", spawn)
    monkeypatch.setattr(stack, "wait_ready", lambda *args, **kwargs: None)
    monkeypatch.setattr(stack, "run_cli", lambda *args, **kwargs: None)
    monkeypatch.delenv("PERENNIAL_DB_URL", raising=False)
    monkeypatch.delenv(SIGNING_KEY, raising=False)
    stack.up(tmp_path)

    key = credentials(tmp_path)[SIGNING_KEY]  # generated once with the other credentials
    assert len(key) >= 32
    for name in ("worker", "serve-flights"):
        assert started[name]["env"][SIGNING_KEY] == key, name
    for name in ("mlflow-server", "prefect-server"):
        assert SIGNING_KEY not in started[name]["env"], name
    for entry in started.values():
        assert key not in " ".join(entry["command"])  # never in argv
    assert f"{SIGNING_KEY}={key}" in (tmp_path / "run" / "env").read_text()  # for the CLI
