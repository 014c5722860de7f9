"""Registration: a training run's identity, what the registry already holds of it, and the new
challenger version with everything that explains it (lineage tags, holdout metrics, search
figures).

A run is identified by its study (dataset, config fingerprint, hashes of the validated batches)
and its trial budget. A rerun of an identical training registers nothing new: it reports the
version the first run registered, and finishes that version's decision if a crash cut the first
run short. The key is checked here, before tuning, and again under the registry lock when
registering (`tasks.registry.log_and_register`), where two machines racing meet.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from tasks.core.config import PerennialConfig
from tasks.core.run_logging import run_logger
from tasks.core.storage import content_hash
from tasks.data.features import Datasets
from tasks.data.verdict import GateResult
from tasks.learn.explain import Explanation
from tasks.learn.model import search_metric
from tasks.learn.scorer import Scorer
from tasks.learn.study import render_study_figures, study_name_for_batches
from tasks.learn.train import ServedModel
from tasks.learn.tune import TuneResult
from tasks.registry.client import (
    CHAMPION,
    TRAINING_KEY_TAG,
    VersionInfo,
    find_by_training_key,
    log_file,
    version_by_alias,
)
from tasks.registry.evaluate import Comparison
from tasks.registry.lineage import JUDGED_ON_TAG, TRAINED_ON_TAG, lineage_tags
from tasks.registry.model_signing import signing_key
from tasks.registry.model_store import PickledModelError, load_model, log_and_register
from tasks.registry.slices import slice_key, slices_csv

DECISION_TAG = "perennial.decision"


@dataclass
class TrainingRun:
    """Who a training run is, and what the registry already holds of it."""

    study: str
    key: str
    batch_hashes: dict[str, str]
    registered: VersionInfo | None = None  # registered by an identical run (decided or not)

    @property
    def decided(self) -> bool:
        """An identical run registered and decided: nothing is left to do."""
        return self.registered is not None and DECISION_TAG in self.registered.tags


def training_key(name: str, config: PerennialConfig, trials: int | None) -> str:
    """Identity of a training run: same study (data + config) and same trial budget."""
    return content_hash(f"{name}|{config.hpo.trials_for(trials)}".encode())[:24]


def identify_run(
    config: PerennialConfig, gate: dict[str, GateResult], trials: int | None
) -> TrainingRun:
    """The run's study name and training key, from the hashes of the batches it validated."""
    hashes = {batch: result.sha256 for batch, result in gate.items()}
    name = study_name_for_batches(config, hashes)
    return TrainingRun(name, training_key(name, config, trials), hashes)


@task(name="find-earlier-registration", cache_policy=NO_CACHE)
def identify_run_task(
    config: PerennialConfig, gate: dict[str, GateResult], trials: int | None
) -> TrainingRun:
    signing_key(config)  # no key to sign the model with: refused now, not after the training
    run = identify_run(config, gate, trials)
    run.registered = find_by_training_key(config, run.key)
    return run


@task(name="load-champion", cache_policy=NO_CACHE)
def load_champion_task(config: PerennialConfig) -> tuple[VersionInfo | None, Scorer | None]:
    """The champion version and its model (both None before the first promotion). A champion
    pickled by an earlier Perennial loads no more: the run goes on without its model, so that
    its challenger, judged as a first model (`tasks.registry.evaluate.compare_task` says so in
    the decision), can replace it."""
    champion = version_by_alias(config, CHAMPION)
    if champion is None:
        return None, None
    try:
        return champion, load_model(config, champion.version)
    except PickledModelError as exc:
        run_logger().warning("%s", exc)
        return champion, None


def registration_inputs(
    config: PerennialConfig,
    run: TrainingRun,
    gate: dict[str, GateResult],
    tuned: TuneResult,
    comparison: Comparison,
    reason: str,
    served: ServedModel,
) -> tuple[dict[str, Any], dict[str, float], dict[str, str]]:
    """Parameters, metrics and lineage tags of the new version. The holdout metrics are its
    recipe's, trained without the holdout; `perennial.trained_on` says which batches the
    registered model itself saw."""
    tags = lineage_tags(
        batches=list(gate),
        batch_hashes=run.batch_hashes,
        suite=config.validation.suite,
        gate_summary="; ".join(f"{b}: {r.headline()}" for b, r in gate.items()),
        config_hash=config.fingerprint(),
        study=tuned.study_name,
        best_trial=tuned.best_trial,
        seed=config.hpo.seed,
        flow_run_id=flow_run.get_id(),
    )
    tags |= {
        "perennial.reason": reason,
        TRAINING_KEY_TAG: run.key,
        TRAINED_ON_TAG: ",".join(served.trained_on),
        JUDGED_ON_TAG: served.judged_on,
        "perennial.refit_on_holdout": str(served.refit).lower(),
    }
    metrics = {
        f"holdout_{k}": v
        for k, v in comparison.challenger.as_dict().items()
        if isinstance(v, (int, float))
    }
    metrics[f"validation_{search_metric(config)}"] = tuned.best_value
    key = slice_key(config.target.task, config.primary_metric)
    metrics[f"holdout_slice_{key}_gap"] = comparison.slice_gap
    params = {
        **tuned.best_params,
        "n_estimators": served.rounds,
        "judged_rounds": tuned.best_rounds,
    }
    return params, metrics, tags


@task(name="register-model", cache_policy=NO_CACHE)
def register_challenger_task(
    config: PerennialConfig,
    run: TrainingRun,
    served: ServedModel,
    data: Datasets,
    gate: dict[str, GateResult],
    tuned: TuneResult,
    comparison: Comparison,
    reason: str,
    explanation: Explanation | None = None,
) -> VersionInfo:
    """The version this run decides on: the one a crashed identical run registered, else a new
    one (`created=False` when an identical run elsewhere registered first: that run decides).
    A new version carries its slice table and, given an explanation, its SHAP importance
    (table and PNG under `explain/`). The temporary folders of those PNGs are gone after."""
    try:
        if run.registered is not None:
            run_logger().info(
                "finishing the decision for v%s (its run stopped early)", run.registered.version
            )
            return run.registered
        params, metrics, tags = registration_inputs(
            config, run, gate, tuned, comparison, reason, served
        )
        texts = {"slices/slice_metrics.csv": slices_csv(comparison.slice_metrics)}
        if explanation is not None:
            texts["explain/shap_importance.csv"] = explanation.table_csv()
        # The study's figures go to the run from a folder of this call's own: nothing is left
        # in the temp dir, whether the registration succeeds or not.
        with tempfile.TemporaryDirectory(prefix="perennial-study-") as folder:
            figures = render_study_figures(
                config.optuna_storage_url, tuned.study_name, Path(folder)
            )
            registered = log_and_register(
                config, served.model, data.x_holdout, params, metrics, tags, texts, figures
            )
        if explanation is not None and registered.created:
            log_file(config, registered.run_id, explanation.plot, "explain")
        return registered
    finally:  # logged, or not needed: 190 such folders had piled up in /tmp
        if explanation is not None:
            shutil.rmtree(explanation.plot.parent, ignore_errors=True)
