"""What monitoring last saw, as Prometheus metrics beside the service's own (`perennial serve`
registers the collector on its `/metrics`).

Read from the newest monitored batch's record (tasks/watch/report.py) when scraped, at most once
per `REFRESH_SECONDS`:

    perennial_champion_metric{metric="rmse", kind="realised"}   the champion's judged metric on
    perennial_champion_metric{metric="rmse", kind="estimated"}  the newest batch: measured on its
                                                                 labels, estimated before them
    perennial_monitored_batch_drift_max_psi                     that batch's largest PSI
    perennial_monitored_batch_alert                             1 when it alerted, else 0
    perennial_monitored_batch_champion_version                  the champion that saw it

The metric is a label (`roc_auc`, `macro_auc`, `rmse`, ...: tasks/core/metrics.py), so a
dashboard reads any kind of target with one query, and a binary model's series is
`metric="roc_auc"`. A value that is not known (no labels yet, no sound estimate) is absent,
never a made-up number.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tasks.core.config import PerennialConfig
from tasks.core.storage import Storage

REFRESH_SECONDS = 60.0


class MonitoringCollector(Collector):
    """A Prometheus collector of the newest monitored batch's record."""

    def __init__(self, config: PerennialConfig, storage: Storage) -> None:
        self.config, self.storage = config, storage
        self.lock = threading.Lock()
        self.record: dict[str, Any] | None = None
        self.read_at = -math.inf

    def newest(self) -> dict[str, Any] | None:
        from tasks.watch.report import load_batch_records

        with self.lock:
            if time.monotonic() - self.read_at >= REFRESH_SECONDS:
                try:
                    records = load_batch_records(self.storage, self.config)
                except (OSError, ValueError):  # storage away: the service's metrics still answer
                    records = []
                self.record = records[-1] if records else None
                self.read_at = time.monotonic()
            return self.record

    def collect(self) -> Iterator[GaugeMetricFamily]:
        record = self.newest()
        if record is None:
            return
        metric = str(record.get("metric") or self.config.primary_metric)
        judged = GaugeMetricFamily(
            "perennial_champion_metric",
            "The champion's judged metric on the newest monitored batch: realised on its "
            "labels, or estimated before them.",
            labels=["metric", "kind"],
        )
        realised = (record.get("labelled") or {}).get(metric)
        estimated = record.get("estimated") or {}
        for kind, value in (("realised", realised), ("estimated", estimated.get("value"))):
            if isinstance(value, (int, float)) and math.isfinite(value):
                judged.add_metric([metric, kind], float(value))
        yield judged
        drift = record.get("drift") or {}
        for name, help_text, value in (
            (
                "perennial_monitored_batch_drift_max_psi",
                "Largest PSI of a feature on the newest monitored batch.",
                drift.get("max_psi"),
            ),
            (
                "perennial_monitored_batch_alert",
                "1 when the newest monitored batch alerted, else 0.",
                1.0 if drift.get("status") == "alert" else 0.0,
            ),
            (
                "perennial_monitored_batch_champion_version",
                "The champion version that saw the newest monitored batch.",
                float(record.get("model_version") or 0),
            ),
        ):
            if isinstance(value, (int, float)):
                yield GaugeMetricFamily(name, help_text, value=float(value))
