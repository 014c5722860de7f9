"""The search itself, on small synthetic data with the flights config: real Optuna and XGBoost
searches, each of a few trials, a journal file in a temporary home (a warm start, a repeated
seed, two workers, the timeout, a dead process's trial, the figures). The plain parts of the
search are in tests/unit/test_tune.py; kills, PostgreSQL and Prefect in test_tune_processes.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.data.features import Datasets
from tasks.learn.study import WORKER_ATTR, create_study, render_study_figures
from tasks.learn.tune import tune, typed_warm_start
from tests.conftest import FLIGHTS
from tests.unit.test_tune import small_config, synthetic_datasets


@pytest.fixture(scope="module")
def data() -> Datasets:
    return synthetic_datasets(load_config(FLIGHTS))


@pytest.mark.slow
def test_the_champion_is_the_first_trial_even_with_string_params(
    tmp_path: Path, data: Datasets
) -> None:
    config = small_config(tmp_path, trials=3, workers=1)
    champion = {"max_depth": "4", "learning_rate": "0.1", "min_child_weight": "2.0"}
    champion |= {"subsample": "0.9", "colsample_bytree": "0.8", "reg_lambda": "1.0"}

    result = tune(data, config, "warm", warm_start=champion)

    first = result.trials[0]
    assert first["state"] == "COMPLETE"
    assert {k: first[k] for k in champion} == typed_warm_start(champion, config.hpo)


@pytest.mark.slow
def test_one_worker_and_a_seed_repeat_the_same_search(tmp_path: Path, data: Datasets) -> None:
    runs = [
        tune(data, small_config(tmp_path / f"run{i}", workers=1), "repeat", trials=6)
        for i in range(2)
    ]

    assert runs[0].best_params == runs[1].best_params
    assert [t["value"] for t in runs[0].trials] == [t["value"] for t in runs[1].trials]
    assert runs[0].workers == 1


@pytest.mark.slow
def test_workers_share_the_study_and_split_the_cores(tmp_path: Path, data: Datasets) -> None:
    config = small_config(tmp_path, workers=2, trials=8, pruner="none")

    result = tune(data, config, "parallel")

    cores = len(os.sched_getaffinity(0))
    assert (result.workers, result.threads_per_worker) == (2, max(1, cores // 2))
    # Two workers finishing at the same moment may each start one more trial: never fewer.
    assert 8 <= result.trials_total <= 9
    assert result.trials_run == result.trials_total
    owners = {t.user_attrs[WORKER_ATTR] for t in create_study(config, "parallel").trials}
    assert owners == {f"{socket.gethostname()}:{os.getpid()}"}
    searched = list(config.hpo.search_space)
    points = [tuple(row[name] for name in searched) for row in result.trials]
    assert len(set(points)) == len(points)  # workers did not repeat each other's points


@pytest.mark.slow
def test_the_timeout_ends_the_search_before_the_trial_budget(
    tmp_path: Path, data: Datasets
) -> None:
    config = small_config(tmp_path, trials=500, timeout_s=1.0, workers=1, pruner="none")

    result = tune(data, config, "budget")

    assert 1 <= result.trials_total < 500


@pytest.mark.slow
def test_a_running_trial_of_a_dead_process_is_failed_and_rerun(
    tmp_path: Path, data: Datasets
) -> None:
    config = small_config(tmp_path, trials=3, workers=1)
    study = create_study(config, "stale")
    dead_pid = int(
        subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    orphan = study.ask()
    orphan.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{dead_pid}")

    result = tune(data, config, "stale")

    states = {t["number"]: t["state"] for t in result.trials}
    assert states[orphan.number] == "FAIL"
    assert result.stale_failed == 1
    assert result.trials_total == 3
    assert "RUNNING" not in states.values()


@pytest.mark.slow
def test_figures_are_png_files(tmp_path: Path, data: Datasets) -> None:
    config = small_config(tmp_path, trials=4, workers=1, pruner="none")
    tune(data, config, "figures")

    figures = render_study_figures(config.optuna_storage_url, "figures", tmp_path / "png")

    assert set(figures) == {"optuna_history.png", "optuna_importance.png"}
    for path in figures.values():
        assert path.read_bytes().startswith(b"\x89PNG")
