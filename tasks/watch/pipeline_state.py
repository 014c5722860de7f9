"""The pipeline's own state, as `perennial serve` shows it on `/metrics`: the registry's champion,
when a model was last trained, the champion's realized metric on the newest labelled batch, the
estimated metric of the newest monitored batch, gate refusals and drift verdicts.

Read off the request path by a thread of its own (`PipelineWatcher`), every
`PIPELINE_REFRESH_SECONDS` (the registry and the monitoring records change a few times a month;
a scrape must not wait on them), and exposed by the same object as a Prometheus collector.
Metric values carry the metric's name as a label (`perennial_champion_metric{metric="roc_auc"}`),
so a dashboard or rule reads the same series whatever the task's primary metric is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tasks.core import catalog
from tasks.core.config import PerennialConfig
from tasks.core.storage import Storage
from tasks.registry.client import CHAMPION
from tasks.watch.profile import ALERT, OK, WARN

log = logging.getLogger("perennial.serve")

PIPELINE_REFRESH_SECONDS = 60.0


@dataclass(frozen=True)
class PipelineState:
    """What the registry and the monitoring records say, at one moment (None: not known yet)."""

    metric: str  # the primary metric's name
    champion_version: str | None = None
    last_training: float | None = None  # the newest registered version, seconds since the epoch
    champion_metric: float | None = None  # realized, on the champion's newest labelled batch
    estimated_metric: float | None = None  # estimated (before labels), newest monitored batch
    gate_refusals: int = 0  # quarantine reasons written (batches and revisions)
    monitored: dict[str, int] = field(default_factory=dict)  # drift status -> batches


def registry_facts(config: PerennialConfig) -> tuple[str | None, float | None]:
    """The champion's version and the newest registered version's creation time."""
    from mlflow.exceptions import MlflowException

    from tasks.registry.client import connect

    client = connect(config)
    try:
        champion = str(client.get_model_version_by_alias(config.model_name, CHAMPION).version)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        champion = None
    newest = client.search_model_versions(
        f"name = '{config.model_name}'", max_results=1, order_by=["creation_timestamp DESC"]
    )
    trained = newest[0].creation_timestamp / 1000 if newest else None
    return champion, trained


def estimate_of(record: dict[str, Any], metric: str) -> float | None:
    """A monitoring record's estimate of `metric` before labels (tasks/watch/estimate.py), or
    None (no sound estimate, or one of another metric); records written before every task had
    an estimate kept the binary one as `estimated_auc`."""
    estimated = record.get("estimated") or {}
    if estimated.get("metric", "roc_auc") != metric or estimated.get("unsound"):
        return None
    value = estimated.get("value", estimated.get("estimated_auc"))
    return None if value is None else float(value)


def read_pipeline_state(
    config: PerennialConfig,
    storage: Storage,
    registry: Callable[[PerennialConfig], tuple[str | None, float | None]] = registry_facts,
) -> PipelineState:
    """The pipeline's state from the registry and from the monitoring and quarantine records."""
    from tasks.watch.report import REASON_SUFFIX, load_batch_records

    metric = config.primary_metric
    champion, trained = registry(config)
    records = load_batch_records(storage, config)  # oldest batch first
    realized = next(
        (
            record["labelled"][metric]
            for record in reversed(records)
            if (record.get("labelled") or {}).get(metric) is not None
            and str(record.get("model_version")) == champion
        ),
        None,
    )  # None too where the monitor records no value of this metric
    estimated = next(
        (value for record in reversed(records) if (value := estimate_of(record, metric))),
        None,
    )
    refusals = sum(
        key.endswith(REASON_SUFFIX)
        for key in storage.list(catalog.key("quarantine_folder", config))
    )
    verdicts = Counter(dict.fromkeys((OK, WARN, ALERT), 0))  # each verdict's series always shown
    verdicts.update(str((record.get("drift") or {}).get("status", "unknown")) for record in records)
    return PipelineState(
        metric=metric,
        champion_version=champion,
        last_training=trained,
        champion_metric=None if realized is None else float(realized),
        estimated_metric=None if estimated is None else float(estimated),
        gate_refusals=refusals,
        monitored=dict(verdicts),
    )


class PipelineWatcher:
    """Refreshes the pipeline's state in a thread and exposes it as Prometheus metrics (register
    it in the app's registry). A failed read keeps the last state and is counted."""

    def __init__(
        self,
        config: PerennialConfig,
        storage: Storage,
        reader: Callable[[PerennialConfig, Storage], PipelineState] = read_pipeline_state,
        interval: float = PIPELINE_REFRESH_SECONDS,
    ) -> None:
        self.config, self.storage, self._reader, self.interval = config, storage, reader, interval
        self.state: PipelineState | None = None
        self.refreshed_at: float | None = None
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh(self) -> None:
        try:
            self.state = self._reader(self.config, self.storage)
            self.refreshed_at = time.time()
        except Exception:
            self.failures += 1
            log.exception("reading the pipeline state of %s failed", self.config.model_name)

    def _loop(self) -> None:
        self.refresh()
        while not self._stop.wait(self.interval):
            self.refresh()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="pipeline-state", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def describe(self) -> list[Metric]:
        return []  # no metrics at registration: collect() reads the state only then

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "perennial_pipeline_state_failures",
            "Reads of the pipeline state (registry, monitoring records) that failed.",
            value=self.failures,
        )
        state = self.state
        if state is None or self.refreshed_at is None:
            return
        yield _gauge(
            "perennial_pipeline_state_timestamp_seconds",
            "When the pipeline state shown here was read.",
            self.refreshed_at,
        )
        yield _gauge(
            "perennial_champion_version",
            "Registered version the registry's champion alias points to (0: none).",
            float(state.champion_version or 0),
        )
        if state.last_training is not None:
            yield _gauge(
                "perennial_last_training_timestamp_seconds",
                "When the newest version of the model was registered (a training that finished).",
                state.last_training,
            )
        labelled = {"metric": state.metric}
        if state.champion_metric is not None:
            yield _gauge(
                "perennial_champion_metric",
                "The champion's realized primary metric on its newest labelled batch.",
                state.champion_metric,
                labelled,
            )
        if state.estimated_metric is not None:
            yield _gauge(
                "perennial_batch_estimated_metric",
                "The champion's primary metric estimated before labels, newest monitored batch.",
                state.estimated_metric,
                labelled,
            )
        yield CounterMetricFamily(
            "perennial_gate_refusals",
            "Batches (and revisions) the gate refused into quarantine, so far.",
            value=state.gate_refusals,
        )
        monitored = GaugeMetricFamily(
            "perennial_monitored_batches",
            "Monitored batches by drift verdict (ok, warn, alert).",
            labels=["status"],
        )
        for status, count in sorted(state.monitored.items()):
            monitored.add_metric([status], count)
        yield monitored


def _gauge(
    name: str, documentation: str, value: float, labels: dict[str, Any] | None = None
) -> Metric:
    if not labels:
        return GaugeMetricFamily(name, documentation, value=value)
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    family.add_metric([str(v) for v in labels.values()], value)
    return family
