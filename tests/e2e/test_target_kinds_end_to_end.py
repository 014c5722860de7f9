"""The two demo configs of other target kinds, from their YAML alone, through the `perennial`
command as a user runs it: ingest (and the gate), search, train and promote (a first champion,
then a challenger judged against it with its interval), predict, and `perennial serve` answering
by task. Small: three months, then a fourth, two trials each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from tasks.core import catalog
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tests.conftest import ROOT, run_perennial, stop_process
from tests.integration.test_serve import free_port, request_rows

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MINUTES = ROOT / "configs" / "flights_delay_minutes.yaml"
BAND = ROOT / "configs" / "flights_delay_band.yaml"


def perennial(home: Path, api: str, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    found = run_perennial(
        {"PERENNIAL_HOME": str(home), "PREFECT_API_URL": api},
        *args,
        "--config",
        str(config),
        timeout=900,
    )
    assert found.returncode == 0, found.stdout + found.stderr
    return found


def served_answers(home: Path, config: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`perennial serve` on a free port, one /predict request, stopped by PID."""
    port = free_port()
    env = {**os.environ, "PERENNIAL_HOME": str(home)}
    log = (home / f"serve-{port}.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "perennial"),
            *("serve", "--port", str(port), "--config", str(config)),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, (home / f"serve-{port}.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy in 300 s"
            time.sleep(0.3)
        return httpx.post(f"{url}/predict?explain=true", json=rows, timeout=60).json()
    finally:
        stop_process(process, grace_s=30)
        log.close()


@pytest.mark.parametrize("path", [MINUTES, BAND], ids=["regression", "multiclass"])
def test_a_target_kind_runs_the_loop_from_its_yaml(
    path: Path, tmp_path: Path, prefect_api_url: str
) -> None:
    home = tmp_path / "home"
    config = load_config(path).model_copy(update={"home": str(home)})
    for month in ("2013-01", "2013-02", "2013-03", "2013-04"):
        landed = perennial(home, prefect_api_url, path, "ingest", "--batch", month, "--json")
        assert json.loads(landed.stdout)["gate"] == "passed"

    first = perennial(
        home, prefect_api_url, path, "train", "--batches", "2013-01..2013-03", "--trials", "2"
    )
    title = "RMSE" if config.target.task == "regression" else "macro AUC"
    assert (
        "v1 promoted to champion" in first.stdout and f"holdout 2013-03: {title} " in first.stdout
    )
    assert "AUC" not in first.stdout if config.target.task == "regression" else True
    if config.target.task == "regression":
        assert "for the training mean" in first.stdout  # the floor: both numbers

    second = perennial(
        home, prefect_api_url, path, "train", "--batches", "2013-01..2013-04", "--trials", "2",
        "--json",
    )  # fmt: skip
    judged = json.loads(second.stdout)
    assert judged["version"] == "2" and judged["champion"] is not None
    assert any("95% interval of the gain" in reason for reason in judged["reasons"])
    assert any(reason.startswith(f"{title}") for reason in judged["reasons"])

    status = json.loads(perennial(home, prefect_api_url, path, "status", "--json").stdout)
    champion = status["champion"]
    assert f"holdout_{config.primary_metric}" in champion["metrics"]

    perennial(home, prefect_api_url, path, "predict", "--batch", "2013-04")
    storage = Storage(str(home))
    written = storage.read_parquet(catalog.key("predictions", config, batch="2013-04"))
    frame = storage.read_parquet(catalog.key("validated", config, batch="2013-04")).head(50)
    served = served_answers(home, path, request_rows(frame, config))
    assert served["version"] == champion["version"]
    rows = served["predictions"]
    assert all(len(row["reasons"]) == 3 for row in rows)  # SHAP reasons per answer
    if config.target.task == "regression":
        values = [row["value"] for row in rows]
        batch_values = written["champion_value"].head(50).tolist()
        assert values == pytest.approx(batch_values, abs=1e-4)
        assert pd.Series(written["champion_value"]).std() > 1  # minutes, not a probability
    else:
        classes = config.target.classes or []
        assert all(set(row["probabilities"]) == set(classes) for row in rows)
        assert [row["class"] for row in rows] == written["champion_predicted_class"].head(
            50
        ).tolist()
        for name in classes:
            served_p = [row["probabilities"][name] for row in rows]
            batch_p = written[f"champion_probability_{name}"].head(50).tolist()
            assert served_p == pytest.approx(batch_p, abs=1e-6)
