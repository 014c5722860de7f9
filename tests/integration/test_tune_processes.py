"""The search across real processes: killed with SIGKILL and resumed (journal file), two worker
processes sharing one PostgreSQL study, and the Prefect task with its artifacts.

Run as a script, this file is one search process:
    python tests/integration/test_tune_processes.py '{"home": ..., "name": ..., ...}'
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from tasks.core.config import PerennialConfig, load_config  # noqa: E402
from tasks.learn.study import WORKER_ATTR, create_study  # noqa: E402
from tasks.learn.tune import tune  # noqa: E402
from tests.unit.test_tune import small_config, synthetic_datasets  # noqa: E402

POSTGRES = "postgresql://postgres@127.0.0.1:5432"


def search_config(spec: dict[str, Any]) -> PerennialConfig:
    config = small_config(Path(spec["home"]), **spec.get("hpo", {}))
    return config.model_copy(update={"optuna_storage": spec.get("storage")})


def run_search(spec: dict[str, Any]) -> None:
    config = search_config(spec)
    data = synthetic_datasets(load_config(ROOT / "configs" / "flights.yaml"), spec["rows"])
    tune(data, config, spec["name"])


def start_search(spec: dict[str, Any]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, __file__, json.dumps(spec)], cwd=ROOT, env=env)


def finished(config: PerennialConfig, name: str) -> list[Any]:
    return [t for t in create_study(config, name).trials if t.state.name in ("COMPLETE", "PRUNED")]


@pytest.mark.integration
@pytest.mark.slow
def test_a_search_killed_with_sigkill_resumes_and_runs_only_the_missing_trials(
    tmp_path: Path,
) -> None:
    # Unpruned trials of 200 rounds: long enough to be killed in the middle of the search.
    hpo = {"trials": 6, "workers": 1, "pruner": "none", "max_rounds": 200}
    hpo["early_stopping_rounds"] = 200
    spec = {"home": str(tmp_path), "name": "killed", "rows": 4000, "hpo": hpo}
    config = search_config(spec)
    process = start_search(spec)
    try:
        deadline = time.monotonic() + 300
        while len(finished(config, "killed")) < 2:
            assert process.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "no two trials finished in 300 s"
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    before = {t.number: t.value for t in finished(config, "killed")}
    assert 2 <= len(before) < 6

    rerun = start_search(spec)
    assert rerun.wait(timeout=600) == 0

    trials = create_study(config, "killed").trials
    after = {t.number: t.value for t in trials if t.state.name in ("COMPLETE", "PRUNED")}
    assert len(after) == 6
    assert {n: after[n] for n in before} == before  # earlier trials kept, values unchanged
    assert all(t.state.name != "RUNNING" for t in trials)
    finished_trials = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    owners = {t.user_attrs[WORKER_ATTR].rpartition(":")[2] for t in finished_trials}
    assert owners == {str(process.pid), str(rerun.pid)}
    # The trial the kill interrupted (if any) is failed, not finished, and was replaced. The
    # kill may land before the trial recorded its worker: then it has no owner at all.
    killed_trials = [t for t in trials if t.state.name == "FAIL"]
    assert len(killed_trials) <= 1
    assert all(
        t.user_attrs.get(WORKER_ATTR, f":{process.pid}").endswith(f":{process.pid}")
        for t in killed_trials
    )
    assert len(trials) == 6 + len(killed_trials)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"perennial_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 ({exc})")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.integration
@pytest.mark.slow
def test_two_worker_processes_share_one_postgresql_study(tmp_path: Path, postgres_url: str) -> None:
    hpo = {"trials": 8, "workers": 1, "pruner": "none"}
    specs = [
        {
            "home": str(tmp_path / f"machine{index}"),
            "storage": postgres_url,
            "name": "shared",
            "rows": 1500,
            "hpo": {**hpo, "first_worker_index": index},  # each machine its own seeds
        }
        for index in range(2)
    ]
    config = search_config(specs[0])
    create_study(config, "shared")  # as the training flow does before workers join

    processes = [start_search(spec) for spec in specs]
    try:
        codes = [process.wait(timeout=600) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert codes == [0, 0]

    trials = finished(config, "shared")
    # A worker stops once finished + running trials fill the budget; two finishing at the same
    # moment may each start one more.
    assert 8 <= len(trials) <= 9
    owners = {t.user_attrs[WORKER_ATTR].rpartition(":")[2] for t in trials}
    assert owners == {str(process.pid) for process in processes}
    points = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(points)) == len(points)


@pytest.mark.integration
@pytest.mark.slow
def test_the_prefect_task_runs_workers_as_tasks_and_makes_a_table_and_figures(
    prefect_server: None, tmp_path: Path
) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    from tasks.learn.study import render_study_figures
    from tasks.learn.tune import TuneResult, tune_task

    config = small_config(tmp_path, trials=4, workers=2)
    data = synthetic_datasets(load_config(ROOT / "configs" / "flights.yaml"))

    @flow
    def search() -> TuneResult:
        return tune_task(data, config, "in-prefect")

    state = search(return_state=True)
    result = state.result()

    assert result.trials_total >= 4 and result.workers == 2
    figures = render_study_figures(config.optuna_storage_url, result.study_name, tmp_path / "png")
    assert figures["optuna_history.png"].read_bytes().startswith(b"\x89PNG")
    with get_client(sync_client=True) as client:  # this run's table, not another test's
        this_run = ArtifactFilter(
            key=ArtifactFilterKey(any_=["flights-hpo-trials"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
        )
        artifacts = client.read_artifacts(artifact_filter=this_run)
    assert len(artifacts) == 1 and artifacts[0].type == "table"
    table = artifacts[0].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [row["number"] for row in rows] == [row["number"] for row in result.trials]


if __name__ == "__main__":
    run_search(json.loads(sys.argv[1]))
