"""The search's plain parts with the flights config: warm-start types, the worker layout, the
study name, stale trials on a journal file in a temporary home; and the synthetic data other
tests search on. Searches themselves are in tests/integration/test_tune_search.py; kills,
PostgreSQL and Prefect in tests/integration/test_tune_processes.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.data.features import Datasets, TimeSplit
from tasks.learn.study import (
    WORKER_ATTR,
    create_study,
    fail_stale_trials,
    open_optuna_storage,
)
from tasks.learn.tune import typed_warm_start, worker_layout
from tests.conftest import FLIGHTS, ROOT


def synthetic_datasets(config: PerennialConfig, rows: int = 800, seed: int = 0) -> Datasets:
    """Rows with the config's feature columns and a label that depends on a few of them."""
    rng = np.random.default_rng(seed)

    def part(n: int) -> tuple[pd.DataFrame, pd.Series]:
        columns: dict[str, object] = {c: rng.normal(size=n) for c in config.features.numeric}
        columns.update({c: rng.integers(1, 28, size=n).astype(float) for c in config.features.time})
        for name in config.features.categorical:
            columns[name] = rng.choice(["a", "b", "c", "d"], size=n).astype(object)
        x = pd.DataFrame(columns)[config.features.columns]
        signal = x[config.features.numeric[0]] + 0.8 * x[config.features.numeric[1]]
        signal = signal + (x[config.features.categorical[0]] == "a") + rng.normal(size=n)
        return x, pd.Series((signal > 0.5).astype(np.int8), name="y")

    split = TimeSplit(train=["2013-01"], validation="2013-02", holdout="2013-03")
    return Datasets(split, *part(rows), *part(rows // 2), *part(rows // 2))


def small_config(home: Path, **hpo: object) -> PerennialConfig:
    config = load_config(FLIGHTS)
    settings = {"trials": 6, "max_rounds": 30, "early_stopping_rounds": 10, "seed": 7, **hpo}
    return config.model_copy(
        update={
            "home": str(home),
            "optuna_storage": None,
            "hpo": config.hpo.model_copy(update=settings),
        }
    )


def test_warm_start_strings_from_mlflow_are_converted_to_the_search_space_types() -> None:
    hpo = load_config(FLIGHTS).hpo
    floats = {name: b.high for name, b in hpo.search_space.items() if name != "max_depth"}
    params = {"max_depth": "6", **{name: str(value) for name, value in floats.items()}}
    params["n_estimators"] = "120"  # not searched: ignored

    typed = typed_warm_start(params, hpo)

    assert typed == {"max_depth": 6, **floats}
    assert isinstance(typed["max_depth"], int)
    assert typed_warm_start({"max_depth": "6"}, hpo) is None  # incomplete: no warm start
    assert typed_warm_start({**params, "subsample": "n/a"}, hpo) is None
    # Outside the search space the config now names (narrowed since the champion trained):
    # the space is the user's constraint, so no warm start.
    assert typed_warm_start({**params, "max_depth": "11"}, hpo) is None
    assert typed_warm_start({**params, "learning_rate": "0.5"}, hpo) is None


def test_worker_layout_uses_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    # The machine's own core count is not the project's: fix it, so the test reads the same on
    # 2 cores and on 96 (where 40 trials would cap the workers below the cores).
    cores = 8
    monkeypatch.setattr("tasks.learn.tune.cores", lambda: cores)
    hpo = load_config(FLIGHTS).hpo
    workers, threads = worker_layout(hpo.model_copy(update={"workers": None}), 40)
    assert (workers, workers * threads) == (cores, cores)
    assert worker_layout(hpo.model_copy(update={"workers": 1}), 40) == (1, cores)
    assert worker_layout(hpo.model_copy(update={"workers": 4}), 2)[0] == 2  # no idle workers


def test_layout_settings_do_not_change_the_study_name() -> None:
    config = load_config(FLIGHTS)
    layout = {"workers": 3, "threads_per_worker": 1, "first_worker_index": 4}
    other = config.model_copy(update={"hpo": config.hpo.model_copy(update=layout)})
    assert other.fingerprint() == config.fingerprint()


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(done.stdout)


def test_stale_trials_are_failed_and_live_ones_kept(tmp_path: Path) -> None:
    config = small_config(tmp_path)
    storage = open_optuna_storage(config.optuna_storage_url)
    study = create_study(config, "stale-unit", storage)
    dead = study.ask()
    dead.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{_dead_pid()}")
    alive = study.ask()
    alive.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getppid()}")
    unowned = study.ask()  # a journal is one host's: a trial that never named its worker is dead
    other_host = study.ask()
    other_host.set_user_attr(WORKER_ATTR, f"elsewhere.invalid:{os.getppid()}")

    failed = fail_stale_trials(create_study(config, "stale-unit"), storage)

    states = {t.number: t.state.name for t in create_study(config, "stale-unit").trials}
    assert failed == 2
    assert states == {
        dead.number: "FAIL",
        alive.number: "RUNNING",
        unowned.number: "FAIL",
        other_host.number: "RUNNING",
    }


def test_the_study_code_uses_no_private_optuna_attribute() -> None:
    """Optuna's private attributes change without notice between releases: failing a trial
    goes through `study.tell`, the storage type is the one the caller opened."""
    import ast

    for module in ("tasks/learn/study.py", "tasks/learn/tune.py"):
        tree = ast.parse((ROOT / module).read_text())
        private = [
            f"{module}:{node.lineno} .{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
        assert private == []
