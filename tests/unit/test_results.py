"""The JSON of the flows' results: what `perennial <command> --json` prints and what summaries
are stored as. Its keys are a contract (people and tests parse them): the field names of each
result are listed here as the CLI printed them when results were dicts, so a renamed field fails
here rather than in someone's script."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

import pytest

from flows.cli.registry import AliasStatus, RegistryStatus
from flows.monitoring import LiveMonitoringSummary, MonitoringSummary
from tasks.core.results import ABSENT_IF_NONE, jsonable
from tasks.data.bulk_ingest import IngestSummary, RefusedBatch
from tasks.data.verdict import BatchSummary, GatedBatch
from tasks.learn.search import SearchSummary
from tasks.registry.evaluate import Metrics
from tasks.registry.promotion import (
    PromotionSummary,
    RerunSummary,
    RollbackSummary,
    RowCounts,
    TrainingSummary,
    TrialCounts,
)
from tasks.serve.predict import (
    AliasScore,
    ScoringSummary,
    ShadowGain,
    ShadowReport,
    VersionMetrics,
)
from tasks.watch.arms import ArmMetrics, ArmsGain, ArmsReport
from tasks.watch.estimate import Estimate, PastErrors
from tasks.watch.profile import DriftReport, LabelShift
from tasks.watch.replay_results import PolicyRecord, ReplaySummary
from tasks.watch.report import ReportSummary

BATCH = ["dataset", "batch", "landing", "gate"]
METRICS = [
    "roc_auc",
    "log_loss",
    "mean_prediction",
    "label_rate",
    "rows",
    "finite",
    "worst_slice_auc",
    "worst_slice",
]
DRIFT = [
    "dataset",
    "batch",
    "reference_version",
    "rows",
    "status",
    "psi",
    "max_psi",
    "drifted_features",
    "warned_features",
    "reasons",
    "label",
    "performance",
    "estimated",
    "labelled",
    "weighted_psi",
    "weighted_alert",
    "holdout_interval",
    "metric",
    "seconds",
    "fairness",  # only with `fairness:` in the YAML
]
KEYS: dict[type, list[str]] = {
    BatchSummary: BATCH,
    GatedBatch: [*BATCH, "headline", "rows", "failures", "warnings", "reason_key"],
    RefusedBatch: [*BATCH, "error"],
    IngestSummary: [
        "dataset",
        "batches",
        "landed",
        "unchanged",
        "passed",
        "quarantined",
        "refused",
        "skipped_files",
        "ok",
    ],
    TrainingSummary: [
        "model",
        "version",
        "existing",
        "promoted",
        "reasons",
        "blockers",
        "champion_version",
        "holdout",
        "trained_on",
        "rows",
        "challenger",
        "champion",
        "interval",
        "best_params",
        "study",
        "trials",
    ],
    RowCounts: ["train", "holdout", "served"],
    TrialCounts: ["total", "run", "pruned"],
    Metrics: METRICS,
    RerunSummary: [
        "model",
        "version",
        "existing",
        "promoted",
        "reasons",
        "champion_version",
        "holdout",
        "trained_on",
        "challenger",
        "champion",
    ],
    SearchSummary: [
        "dataset",
        "study",
        "trials_total",
        "trials_run",
        "trials_pruned",
        "best_trial",
        "best_value",
        "best_params",
        "sampler_seeds",
    ],
    PromotionSummary: ["model", "champion", "previous", "forced", "holdout", "checks"],
    RollbackSummary: ["model", "champion", "demoted"],
    ScoringSummary: ["batch", "rows", "key", "explained", "champion", "challenger"],
    AliasScore: ["version", "mean_score"],
    DriftReport: DRIFT,
    LabelShift: ["reference_rate", "batch_rate", "shift", "psi", "statistic"],
    Estimate: [
        "method",
        "metric",
        "value",
        "realised",
        "error",
        "past_errors",
        "corrected",
        "range",
        "unsound",
    ],
    PastErrors: ["batches", "mean", "low", "high"],
    MonitoringSummary: [*DRIFT, "plot_key", "event_emitted", "shadow", "arms", "report"],
    LiveMonitoringSummary: [*DRIFT, "live", "plot_key", "event_emitted"],
    # The one change in order: a version's metrics in a shadow report end with "version" (it
    # came first), being a Metrics with its version.
    VersionMetrics: [*METRICS, "version"],
    ShadowReport: ["batch", "rows", "champion", "challenger", "gain"],
    ShadowGain: ["roc_auc", "log_loss", "worst_slice_auc"],
    ArmsReport: ["batch", "live_rows", "rows", "champion", "challenger", "gain"],
    ArmMetrics: ["versions", "rows", "metric", "value", "metrics"],
    ArmsGain: ["metric", "value"],
    ReportSummary: [
        "model",
        "key",
        "location",
        "path",
        "bytes",
        "batches",
        "decisions",
        "quarantines",
        "costs",
    ],
    ReplaySummary: ["dataset", "metric", "batches", "seeds", "policies", "seconds", "generated_at"],
    PolicyRecord: [
        "per_batch",
        "mean_realized",
        "interval",
        "retrains",
        "promotions",
        "alerts",
        "train_seconds",
    ],
    # "erased" is new, and only there when `perennial forget` marked a version.
    RegistryStatus: ["model", "champion", "challenger", "decisions", "costs", "erased"],
    AliasStatus: ["version", "run_id", "metrics", "batches", "trained_on", "judged_on"],
}


def json_keys(result: type) -> list[str]:
    """A result's JSON keys: its fields, or for a holdout record (which has a `json_form`) the
    keys of a binary one, whose fields hold its metrics by name."""
    if not hasattr(result, "json_form"):
        return [f.name for f in fields(result)]
    binary = vars(Metrics.binary(0.7, 0.5, 0.2, 0.2, 10, True))
    extra = {"version": "1"} if result is VersionMetrics else {}
    return list(jsonable(result(**binary, **extra)))


@pytest.mark.parametrize("result", KEYS, ids=lambda result: result.__name__)
def test_each_result_keeps_the_keys_its_json_always_had(result: type) -> None:
    assert json_keys(result) == KEYS[result]


@dataclass
class Inner:
    value: float


@dataclass
class Outer:
    name: str
    inner: Inner
    pair: tuple[int, int]
    kept: str | None = None  # null in the JSON
    sometimes: Inner | None = field(default=None, metadata=ABSENT_IF_NONE)


def test_json_leaves_out_only_the_absent_fields_that_are_none() -> None:
    assert jsonable(Outer("a", Inner(0.5), (1, 2))) == {
        "name": "a",
        "inner": {"value": 0.5},
        "pair": [1, 2],
        "kept": None,
    }
    full = jsonable(Outer("a", Inner(0.5), (1, 2), "k", Inner(1.0)))
    assert list(full) == ["name", "inner", "pair", "kept", "sometimes"]
    assert json.loads(json.dumps(full))["sometimes"] == {"value": 1.0}
    assert jsonable({"by": [Inner(2.0)]}) == {"by": [{"value": 2.0}]}


def test_a_gated_batch_prints_reason_key_null_and_a_skipped_one_no_gate_keys() -> None:
    skipped = BatchSummary("flights", "2013-01", "landed", "skipped")
    passed = GatedBatch("flights", "2013-01", "landed", "passed", "ok", 10, [], [], None)
    assert list(jsonable(skipped)) == BATCH
    assert jsonable(passed)["reason_key"] is None
