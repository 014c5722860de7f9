"""Served mode's plain parts: deployments rendered per dataset, private state files, URLs
without passwords (the stack itself runs in tests/e2e)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from flows.service import (
    ServiceError,
    credentials,
    database_password,
    database_urls,
    render_deployments,
    served_datasets,
    write_private,
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
