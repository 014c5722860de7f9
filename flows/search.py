"""Search only: gate -> features -> Optuna trials in the training's study; no model, no registry.

`perennial search` on a second machine joins a running search (shared PostgreSQL Optuna
storage); the next `perennial train` on the same batches finds the trials and runs only the
ones still missing.
"""

from __future__ import annotations

from prefect import flow

from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.core.config_training import checked_trials
from tasks.data.features import build_datasets_task
from tasks.data.ingest import choose_batches_task
from tasks.data.validate import gate_batches_task
from tasks.learn.search import SearchSummary, name_study_task, search_task
from tasks.learn.study import joining_config


@flow(name="search", log_prints=True)
def search(
    batches: str = "",
    trials: int | None = None,
    dataset: str = DEFAULT_DATASET,
    first_worker_index: int | None = None,
    configs_dir: str | None = None,
) -> SearchSummary:
    """Add trials to the study of a training on `batches` until it holds `trials` finished ones.

    Args:
        batches: Batch range, e.g. 2013-01..2013-06 (as `train` takes it); empty: every landed
            batch.
        trials: Finished trials the study should hold; empty: the dataset config's hpo.trials.
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
        first_worker_index: Sampler seed offset of this process's first worker; give each
            process that joins a study its own (0, 2, 4, ... with two workers each).
        configs_dir: Folder of the dataset YAML, as a CLI run with `--config DIR/x.yaml`
            names it; empty: the operator's (configs/, or PERENNIAL_CONFIGS_DIR).
    """
    checked_trials(trials)  # before any work: a UI run with 10**9 trials is refused at once
    config = joining_config(dataset_config(dataset, configs_dir), first_worker_index)
    chosen = choose_batches_task(config, batches, "search only")
    gate = gate_batches_task(config, chosen, "training")
    name = name_study_task(config, gate)
    data = build_datasets_task(config, chosen)
    return search_task(data, config, name, trials)
