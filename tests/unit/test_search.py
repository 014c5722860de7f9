"""`perennial search` meets `perennial train` in one study: the name comes from one helper, a
joining process's seed offset leaves it unchanged, and each trial records its sampler seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.data.verdict import GateResult
from tasks.learn.search import name_study_task, search_summary
from tasks.learn.study import SEED_ATTR, create_study, joining_config
from tasks.learn.tune import tune
from tasks.registry.registration import identify_run
from tests.unit.test_tune import small_config, synthetic_datasets


def gate_of(hashes: dict[str, str]) -> dict[str, Any]:
    """Gate results as identify_run reads them: only each batch's content hash."""
    results = {}
    for batch, sha in hashes.items():
        result = GateResult.__new__(GateResult)  # the other fields are not read
        result.sha256 = sha
        results[batch] = result
    return results


@pytest.mark.parametrize("offset", [None, 0, 1, 4, 17])
def test_search_and_train_name_the_same_study_whatever_the_seed_offset(
    tmp_path: Path, offset: int | None
) -> None:
    config = small_config(tmp_path)
    hashes = {"2013-01": "a" * 64, "2013-02": "b" * 64, "2013-03": "c" * 64}
    # What each flow opens: `perennial train` names its run's study from the gate with the
    # dataset's config; `perennial search --first-worker N` names it with its joining config.
    trained = identify_run(config, gate_of(hashes), trials=None).study
    joining = joining_config(config, offset)
    assert joining.hpo.first_worker_index == (offset or 0)  # the offset is really there
    assert name_study_task.fn(joining, gate_of(hashes)) == trained
    other_data = gate_of({**hashes, "2013-03": "d" * 64})
    assert name_study_task.fn(joining, other_data) != trained  # other batches, another study


def test_trials_record_the_seed_of_the_process_that_sampled_them(tmp_path: Path) -> None:
    config = joining_config(small_config(tmp_path, trials=3, workers=1), 5)
    result = tune(synthetic_datasets(config), config, "seeded")
    trials = create_study(config, "seeded").trials
    assert {t.user_attrs[SEED_ATTR] for t in trials} == {config.hpo.seed + 5}
    summary = search_summary(config, result)
    assert summary.sampler_seeds == [config.hpo.seed + 5]
    assert summary.study == "seeded" and summary.trials_total == 3
    assert "storage" not in str(summary)  # the URL may hold a password: never reported


@pytest.mark.parametrize("batches", ["2013-13..2013-14", "2013-03..2013-01"])
def test_search_refuses_a_bad_range_in_one_line_before_any_flow(batches: str) -> None:
    result = CliRunner().invoke(app, ["search", "--batches", batches])
    assert result.exit_code == 1
    assert result.output.startswith("rejected: ") and len(result.output.splitlines()) == 1
