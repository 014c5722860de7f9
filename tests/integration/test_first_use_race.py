"""Two commands that are the first to use a fresh home at once: both open the MLflow SQLite
registry (which MLflow creates at first use) and neither may fail ("table ... already exists",
seen when `predict` and `monitor` started together on a new home)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from tests.conftest import FLIGHTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def open_registry(home: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    import os

    os.environ["PERENNIAL_HOME"] = home
    from tasks.core.config import load_config
    from tasks.registry.client import connect

    config = load_config(FLIGHTS)
    import mlflow  # noqa: F401  (imported before the barrier: both start the same instant)

    barrier.wait(timeout=120)
    client = connect(config)
    client.search_registered_models(max_results=1)


def test_two_first_commands_on_a_fresh_home_both_open_the_registry(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    for round_ in range(3):
        home = tmp_path / f"home{round_}"
        barrier = context.Barrier(2)
        processes = [
            context.Process(target=open_registry, args=(str(home), barrier)) for _ in range(2)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=300)
        assert [process.exitcode for process in processes] == [0, 0], f"round {round_}"
