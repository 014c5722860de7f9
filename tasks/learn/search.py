"""Search only (`perennial search`): Optuna trials added to the study a training on the same
batches uses, with no final model and nothing registered. A second machine joins a running
search this way (a shared `postgresql://` Optuna storage), and the next `perennial train` on
those batches resumes the study: it runs only the trials still missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.data.features import Datasets
from tasks.data.verdict import GateResult
from tasks.learn.study import study_name_for_batches
from tasks.learn.tune import TuneResult, prefect_runner, publish_trials_table, tune


@dataclass
class SearchSummary:
    """What `perennial search` reports: the study, its trials, its best so far, and the sampler
    seeds this process used (never the storage URL: it may hold a password)."""

    dataset: str
    study: str
    trials_total: int  # finished trials the study holds
    trials_run: int  # run by this process
    trials_pruned: int
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    sampler_seeds: list[int]


@task(name="name-study", cache_policy=NO_CACHE)
def name_study_task(config: PerennialConfig, gate: dict[str, GateResult]) -> str:
    """The study `perennial train` uses for these gated batches (the same name, so searches on
    other machines add to it)."""
    return study_name_for_batches(config, {batch: r.sha256 for batch, r in gate.items()})


@task(name="search-hyperparameters", cache_policy=NO_CACHE)
def search_task(
    data: Datasets, config: PerennialConfig, name: str, trials: int | None = None
) -> SearchSummary:
    """Search only: trials added to the study until it holds `trials` finished ones, no final
    model, nothing registered. No warm start from the champion (that needs the registry, which
    a machine that only searches may not reach)."""
    result = tune(data, config, name, None, trials, runner=prefect_runner)
    publish_trials_table(config, result)
    return search_summary(config, result)


def search_summary(config: PerennialConfig, result: TuneResult) -> SearchSummary:
    first = config.hpo.first_worker_index
    return SearchSummary(
        dataset=config.dataset,
        study=result.study_name,
        trials_total=result.trials_total,
        trials_run=result.trials_run,
        trials_pruned=result.trials_pruned,
        best_trial=result.best_trial,
        best_value=result.best_value,
        best_params=result.best_params,
        sampler_seeds=[config.hpo.seed + first + i for i in range(result.workers)],
    )
