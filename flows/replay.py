"""Replay: what the configured retrain policy, and simple alternatives, would have delivered over
a dataset's history (`perennial replay --batches 2013-01..2013-12`).

Each batch goes through the gate first (landed from the source if needed, quarantined ones
refused), then each policy is replayed over the validated history for each seed; the summary
(the realized judged metric per batch and its mean over seeds, retrains, promotions, alerts,
seconds) is stored as `reports/<dataset>/replay.json`, and the report page draws it.
"""

from __future__ import annotations

from prefect import flow

from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.data.ingest import choose_batches_task
from tasks.data.validate import gate_batches_task
from tasks.watch.labelled_batches import load_history_task
from tasks.watch.replay import replay_policy_task
from tasks.watch.replay_results import ReplaySummary, save_replay_task
from tasks.watch.retrain_policies import POLICY_NAMES


@flow(name="replay", log_prints=True)
def replay(
    batches: str = "",
    seeds: int = 3,
    dataset: str = DEFAULT_DATASET,
    configs_dir: str | None = None,
) -> ReplaySummary:
    """Replay the retrain policies over the dataset's history.

    Args:
        batches: The history to replay, e.g. 2013-01..2013-12; default: every landed batch.
        seeds: Seeds per policy (the interval of the mean realized metric is over them).
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
        configs_dir: Folder of the dataset YAML, as a CLI run with `--config DIR/x.yaml`
            names it; empty: the operator's (configs/, or PERENNIAL_CONFIGS_DIR).
    """
    config = dataset_config(dataset, configs_dir)
    chosen = choose_batches_task(config, batches, "replay")
    gate_batches_task(config, chosen, "replay")
    history = load_history_task(config, chosen)
    results = [
        replay_policy_task(config, history, name, seed)
        for name in POLICY_NAMES
        for seed in range(seeds)
    ]
    return save_replay_task(config, results)
