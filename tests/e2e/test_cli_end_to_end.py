"""The `perennial` command as a user runs it: real subprocesses, real state, exit codes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_perennial

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def perennial(home: Path, api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_perennial({"PERENNIAL_HOME": str(home), "PREFECT_API_URL": api}, *args, timeout=600)


def test_ingest_train_status_and_a_rejected_batch(tmp_path: Path, prefect_api_url: str) -> None:
    home = tmp_path / "home"
    for month in ("2013-01", "2013-02", "2013-03"):
        landed = perennial(home, prefect_api_url, "ingest", "--batch", month, "--json")
        assert landed.returncode == 0, landed.stderr
        assert json.loads(landed.stdout)["gate"] == "passed"

    again = perennial(home, prefect_api_url, "ingest", "--batch", "2013-01")
    assert again.returncode == 0 and "landing unchanged" in again.stdout

    trained = perennial(
        home, prefect_api_url, "train", "--batches", "2013-01..2013-03", "--trials", "1"
    )
    assert trained.returncode == 0, trained.stderr
    assert "v1 promoted to champion" in trained.stdout

    status = perennial(home, prefect_api_url, "status", "--json")
    assert status.returncode == 0, status.stderr
    payload = json.loads(status.stdout)
    assert payload["champion"]["version"] == "1"
    assert payload["champion"]["metrics"]["holdout_roc_auc"] > 0.6

    # A file with a column missing: exit 1, the rule and column named, quarantined, champion kept.
    raw = pd.read_csv(home / "landing" / "flights" / "2013-03.csv").drop(columns=["origin"])
    raw["time_hour"] = raw["time_hour"].str.replace("2013-03", "2013-04")
    bad = tmp_path / "april.csv"
    raw.to_csv(bad, index=False)
    rejected = perennial(
        home, prefect_api_url, "ingest", "--batch", "2013-04", "--source", str(bad)
    )
    assert rejected.returncode == 1
    assert "expect_table_columns_to_match_set" in rejected.stdout
    assert (home / "quarantine" / "flights" / "2013-04.reason.json").is_file()
    assert not (home / "validated" / "flights" / "2013-04.parquet").exists()

    refused = perennial(home, prefect_api_url, "train", "--batches", "2013-01..2013-04")
    assert refused.returncode == 1
    assert "quarantine" in refused.stderr
    after = json.loads(perennial(home, prefect_api_url, "status", "--json").stdout)
    assert after["champion"]["version"] == "1"

    conflicting = perennial(
        home, prefect_api_url, "ingest", "--batch", "2013-01", "--source", str(bad)
    )
    assert conflicting.returncode == 1
    assert "already landed" in conflicting.stderr
