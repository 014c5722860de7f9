"""`trials` from a UI or deployment run is bounded (1 to 10,000, or empty for the dataset's
hpo.trials): a run asking for a billion trials is refused in one line before any search,
where each flow receives it (search, demo) and where training hands it to the search (tune)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tasks.core.config_training import MAX_TRIALS, HpoConfig, checked_trials
from tests.conftest import FLIGHTS

TOO_MANY = [0, -1, MAX_TRIALS + 1, 10**9]


def test_trials_within_the_bound_pass_and_others_are_refused_in_one_line() -> None:
    assert checked_trials(None) is None
    assert checked_trials(1) == 1 and checked_trials(MAX_TRIALS) == MAX_TRIALS
    for trials in [*TOO_MANY, True]:
        with pytest.raises(ConfigError) as refused:
            checked_trials(trials)
        message = str(refused.value)
        assert "1 to 10,000" in message and "hpo.trials" in message and "\n" not in message
    with pytest.raises(ValidationError, match="trials"):
        HpoConfig(trials=MAX_TRIALS + 1)


@pytest.mark.parametrize("trials", TOO_MANY)
def test_flows_refuse_unbounded_trials_before_any_work(trials: int) -> None:
    from flows.demo import demo
    from flows.search import search

    for flow_function in (search.fn, demo.fn):
        with pytest.raises(ConfigError, match="1 to 10,000"):
            flow_function(trials=trials, dataset="no-such-dataset")  # refused before the lookup


def test_the_search_training_runs_refuses_unbounded_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.learn.tune import tune

    monkeypatch.setenv("PERENNIAL_HOME", str(tmp_path / "home"))
    path = tmp_path / "flights.yaml"
    path.write_text(FLIGHTS.read_text())
    config = load_config(path)
    with pytest.raises(ConfigError, match="1 to 10,000"):
        tune(None, config, "study-never-created", trials=10**9)  # type: ignore[arg-type]


def test_the_search_and_the_run_identity_resolve_trials_in_one_place() -> None:
    from tasks.registry.registration import training_key

    hpo = HpoConfig(trials=7)
    assert hpo.trials_for(None) == 7 and hpo.trials_for(3) == 3
    with pytest.raises(ConfigError, match="1 to 10,000"):
        hpo.trials_for(0)  # 0 once named a run "the dataset's trials" while the search refused it
    config = load_config(FLIGHTS)
    default = config.hpo.trials
    assert training_key("study", config, None) == training_key("study", config, default)
    assert training_key("study", config, None) != training_key("study", config, default + 1)
