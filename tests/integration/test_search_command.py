"""`perennial search`: two search processes at once on one PostgreSQL study (as two machines
would) complete the trial budget together with their own seeds, and the next `train` on the
same batches resumes that study: it runs no trial again and registers the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.batches import expand_range
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.suite import profile_landed
from tasks.learn.study import SEED_ATTR, WORKER_ATTR, create_study
from tasks.registry.client import CHAMPION, version_by_alias
from tests.conftest import ROOT, stop_process
from tests.integration.test_second_dataset import CONFIG, write_week
from tests.integration.test_tune_processes import postgres_url  # noqa: F401  (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCHES = "2024-W01..2024-W04"
TRIALS = 6


def start_search(env: dict[str, str], config: Path, first_worker: int) -> subprocess.Popen[str]:
    command = [str(Path(sys.executable).parent / "perennial"), "search", "--batches", BATCHES]
    command += ["--trials", str(TRIALS), "--first-worker", str(first_worker)]
    command += ["--config", str(config), "--json"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_searches_share_the_study_and_train_resumes_it(
    prefect_server: None,
    prefect_api_url: str,
    tmp_path: Path,
    postgres_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The sensors dataset of test_second_dataset: small, so the trials are quick.
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    monkeypatch.setenv("PERENNIAL_OPTUNA_STORAGE", postgres_url)
    monkeypatch.setenv("PERENNIAL_HPO__WORKERS", "1")  # one worker per process: two in all
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))
    (tmp_path / "incoming").mkdir()
    config_path = tmp_path / "sensors.yaml"
    config_path.write_text(CONFIG.replace("trials: 2,", f"trials: {TRIALS},"))
    config = load_config(config_path)
    batches = expand_range(BATCHES, config.time)
    for seed, batch in enumerate(batches):
        write_week(tmp_path / "incoming", batch, seed)
    from tasks.data.ingest import land_batch
    from tasks.data.source import extract_from_source
    from tasks.data.validate import gate_batch

    storage = Storage(config.home)
    for batch in batches:
        land_batch(storage, config, batch, *extract_from_source(config, batch))
    profile_landed(storage, config, batches[:2])
    for batch in batches:  # validated once, as the first machine's ingest would
        gate_batch(storage, config, batch)

    env = {
        "PREFECT_API_URL": prefect_api_url,
        "PERENNIAL_OPTUNA_STORAGE": postgres_url,
        "PERENNIAL_HPO__WORKERS": "1",
    }
    processes = [start_search(env, config_path, first) for first in (0, 1)]
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                stop_process(process)
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
    reports = [json.loads(out) for out, _ in outputs]
    name = reports[0]["study"]
    assert reports[1]["study"] == name
    assert [r["sampler_seeds"] for r in reports] == [[3], [4]]  # the YAML's seed 3, offset 0/1

    trials = [t for t in create_study(config, name).trials if t.state.name != "FAIL"]
    # A process stops once finished + running trials fill the budget; two deciding at the same
    # moment may each start one more.
    assert TRIALS <= len(trials) <= TRIALS + 1
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    pids = {str(process.pid) for process in processes}
    assert {t.user_attrs[WORKER_ATTR].rpartition(":")[2] for t in trials} == pids
    assert {t.user_attrs[SEED_ATTR] for t in trials} == {3, 4}
    points = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(points)) == len(points)  # distinct seeds: no point sampled twice
    searched = {t.number: t.value for t in trials}

    from flows.training import training
    from tasks.registry.promotion import TrainingSummary

    result = training(batches=BATCHES, trials=TRIALS, dataset="sensors")

    assert isinstance(result, TrainingSummary), result
    assert result.study == name  # train resumed the study the searches filled
    assert result.trials.run == 0 and result.trials.total == len(trials)
    after = {t.number: t.value for t in create_study(config, name).trials}
    assert after == searched  # it ran no trial again
    champion = version_by_alias(config, CHAMPION)
    assert result.promoted and champion is not None
    assert champion.version == result.version
    assert champion.tags["perennial.optuna_study"] == name
