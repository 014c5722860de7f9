"""Training: ingest -> validate -> features -> tune -> train -> evaluate -> refit on the holdout
-> register/promote.

Runs on a schedule, from the Prefect UI, on a drift event, or from `perennial train`. A rerun
on the same data, config, seed and trials registers nothing new: it reports the version the
first run registered (and finishes its decision if a crash cut that run short).
"""

from __future__ import annotations

from prefect import flow

from tasks.core.config import DEFAULT_DATASET, dataset_config
from tasks.data.features import build_datasets_task
from tasks.data.ingest import choose_batches_task
from tasks.data.validate import gate_batches_task
from tasks.learn.explain import explain_task
from tasks.learn.train import serve_model_task, train_task
from tasks.learn.tune import tune_task
from tasks.notify.alerts import alert_failed_training
from tasks.registry.cost import CostMeter, record_cost_task
from tasks.registry.evaluate import compare_task
from tasks.registry.promotion import (
    RerunSummary,
    TrainingSummary,
    card_facts,
    decide_task,
    existing_summary_task,
    fit_scores_task,
    training_summary,
)
from tasks.registry.registration import (
    identify_run_task,
    load_champion_task,
    register_challenger_task,
)
from tasks.watch.drift import save_reference_task
from tasks.watch.estimate import fit_calibration_task


@flow(
    name="training",
    log_prints=True,
    on_failure=[alert_failed_training],
    on_crashed=[alert_failed_training],
)
def training(
    batches: str = "",
    trials: int | None = None,
    reason: str = "manual run",
    dataset: str = DEFAULT_DATASET,
    configs_dir: str | None = None,
) -> TrainingSummary | RerunSummary:
    """Train a challenger on `batches` (e.g. `2013-01..2013-06`; the newest is the holdout) and
    promote it if it beats the champion. Empty `batches` means every landed batch.

    Args:
        batches: Batch range to train on, e.g. 2013-01..2013-06 (the newest is the holdout);
            empty: every landed batch.
        trials: Optuna trials of the search; empty: the dataset config's hpo.trials.
        reason: Why this run happens; recorded with the model version and the decision.
        dataset: Name of a dataset YAML in configs/, e.g. flights (the demo).
        configs_dir: Folder of the dataset YAML, as a CLI run with `--config DIR/x.yaml`
            names it; empty: the operator's (configs/, or PERENNIAL_CONFIGS_DIR).
    """
    config = dataset_config(dataset, configs_dir)
    meter = CostMeter()  # wall, CPU, memory and bytes of each stage (tasks/registry/cost.py)
    with meter.stage("gate"):
        chosen = choose_batches_task(config, batches, reason)
        gate = gate_batches_task(config, chosen, "training")
        run = identify_run_task(config, gate, trials)
    if run.registered and run.decided:
        return existing_summary_task(config, run.registered)
    with meter.stage("features"):
        data = build_datasets_task(config, chosen)
        champion, champion_model = load_champion_task(config)
    with meter.stage("tune"):
        tuned = tune_task(data, config, run.study, champion.params if champion else None, trials)
    with meter.stage("train"):
        # Deterministic: a run that crashed before deciding is judged again on the same model.
        model = train_task(data, config, tuned)
    with meter.stage("evaluate"):
        comparison = compare_task(model, champion_model, champion, data, config)
    with meter.stage("refit"):
        served = serve_model_task(model, data, config, tuned)
        explanation = explain_task(served.model, config, data.x_holdout)
    with meter.stage("register"):
        registered = register_challenger_task(
            config, run, served, data, gate, tuned, comparison, reason, explanation
        )
        if not registered.created:  # an identical run elsewhere registered first: it decides
            return existing_summary_task(config, registered)
        fit_scores = fit_scores_task(served.model, data)
        calibration = fit_calibration_task(model, data, config)  # out of sample: the judged model
        save_reference_task(
            config,
            registered.version,
            data.x_fit,
            data.y_fit,
            fit_scores,
            calibration,
            model,
            data,
            explanation.importance if explanation else None,
        )
    cost = record_cost_task(config, registered.run_id, meter.cost)
    facts = card_facts(registered, run, data, gate, tuned, served, champion, explanation, cost)
    decision = decide_task(config, registered, comparison, facts, reason)
    return training_summary(config, registered, decision, comparison, data, tuned, served)
