"""What a run costs: per stage wall time, CPU seconds, peak memory and bytes read and written,
and a price on them (the dataset YAML's `cost:`, default AWS Fargate on-demand).

Measured in the flow's own process, with no dependency beyond Linux's /proc:
- CPU: `getrusage` user + system time of the process (every thread, Prefect's own included)
  and of its reaped child processes (e.g. search workers run as processes).
- Peak memory: the resident set's high-water mark (VmHWM). When a stage sets a new high, that
  is its exact peak; otherwise a sampler thread (every `SAMPLE_SECONDS`) gives the stage's
  peak. The mark is never reset (`clear_refs` would also lower the `ru_maxrss` that outside
  tools such as /usr/bin/time report for the whole process).
- Bytes: `rchar` / `wchar` of /proc/self/io, the bytes passed to read and write calls (files
  whether or not served from the page cache, sockets and pipes too; the process and its reaped
  children). `read_bytes` / `write_bytes` would count only what reached the disk, which is
  often zero for a run whose files stay in the page cache. None where /proc is missing.
Estimated cost = CPU hours x vCPU price + peak GB x wall hours x GB price: what a task sized
to the run would pay, a lower bound of Fargate's bill (it charges the size provisioned, for at
least a minute).
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core.config import PerennialConfig
from tasks.core.config_cost import CostConfig

SAMPLE_SECONDS = 0.05
METRIC_PREFIX = "cost_"
TOTALS = ("wall_seconds", "cpu_seconds", "peak_rss_mb", "read_bytes", "written_bytes", "usd")
PROC = Path("/proc/self")


@dataclass
class StageCost:
    stage: str
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    read_bytes: int | None
    written_bytes: int | None


@dataclass
class RunCost:
    stages: list[StageCost] = field(default_factory=list)

    def totals(self, prices: CostConfig) -> dict[str, float]:
        """Whole-run figures, and the estimated cost in USD at `prices`."""
        wall = sum(s.wall_seconds for s in self.stages)
        cpu = sum(s.cpu_seconds for s in self.stages)
        peak = max((s.peak_rss_mb for s in self.stages), default=0.0)
        usd = cpu / 3600 * prices.vcpu_hour_usd + peak / 1024 * wall / 3600 * prices.gb_hour_usd
        found = {"wall_seconds": wall, "cpu_seconds": cpu, "peak_rss_mb": peak, "usd": usd}
        for name in ("read_bytes", "written_bytes"):
            values = [getattr(s, name) for s in self.stages]
            if all(v is not None for v in values):
                found[name] = float(sum(values))
        return found

    def metrics(self, prices: CostConfig) -> dict[str, float]:
        """MLflow metrics: `cost_<stage>_<figure>` per stage and `cost_<figure>` for the run."""
        found = {f"{METRIC_PREFIX}{k}": v for k, v in self.totals(prices).items()}
        for stage in self.stages:
            for name, value in asdict(stage).items():
                if name != "stage" and value is not None:
                    found[f"{METRIC_PREFIX}{stage.stage}_{name}"] = float(value)
        return found

    def card_line(self, prices: CostConfig) -> str:
        total = self.totals(prices)
        written = total.get("written_bytes")
        io = f", {written / 1e6:,.1f} MB written" if written is not None else ""
        stages = ", ".join(f"{s.stage} {s.wall_seconds:.1f} s" for s in self.stages)
        return (
            f"{total['wall_seconds']:.1f} s wall, {total['cpu_seconds']:.1f} CPU s, peak "
            f"{total['peak_rss_mb']:,.0f} MB{io}: estimated ${total['usd']:.6f} at "
            f"${prices.vcpu_hour_usd}/vCPU-hour and ${prices.gb_hour_usd}/GB-hour "
            f"(prices of {prices.prices_as_of}); stages: {stages}"
        )


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _status_kb(field_name: str) -> float:
    for line in (PROC / "status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return float(line.split()[1])
    return 0.0


def resident_mb() -> tuple[float, float]:
    """Current resident set and its high-water mark, in MB (from ru_maxrss off Linux)."""
    try:
        return _status_kb("VmRSS") / 1024, _status_kb("VmHWM") / 1024
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak, peak


def io_bytes() -> tuple[int, int] | None:
    """Bytes read and written so far (rchar, wchar), or None without /proc/self/io."""
    try:
        fields = dict(line.split(": ") for line in (PROC / "io").read_text().splitlines())
    except OSError:
        return None
    return int(fields["rchar"]), int(fields["wchar"])


class _PeakSampler(threading.Thread):
    """Samples the resident set while a stage runs (daemon: never keeps a process alive)."""

    def __init__(self) -> None:
        super().__init__(name="perennial-cost-sampler", daemon=True)
        self.peak = resident_mb()[0]
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, resident_mb()[0])


class CostMeter:
    """Collects the stages of one run: `with meter.stage("tune"): ...` in the flow."""

    def __init__(self) -> None:
        self.cost = RunCost()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        sampler = _PeakSampler()
        sampler.start()
        _, mark_before = resident_mb()
        io_before, cpu_before, wall_before = io_bytes(), cpu_seconds(), time.perf_counter()
        try:
            yield
        finally:
            wall = time.perf_counter() - wall_before
            cpu = cpu_seconds() - cpu_before
            io_after = io_bytes()
            sampler.done.set()
            sampler.join()
            current, mark_after = resident_mb()
            peak = mark_after if mark_after > mark_before else max(sampler.peak, current)
            read = written = None
            if io_before is not None and io_after is not None:
                read, written = io_after[0] - io_before[0], io_after[1] - io_before[1]
            self.cost.stages.append(StageCost(name, wall, cpu, peak, read, written))


def record_cost(config: PerennialConfig, run_id: str, cost: RunCost) -> dict[str, float]:
    """Log the run's cost as metrics of its MLflow run (the one that registered the model)."""
    from mlflow.entities import Metric

    from tasks.registry.client import connect

    metrics = cost.metrics(config.cost)
    now = int(time.time() * 1000)
    connect(config).log_batch(
        run_id, metrics=[Metric(key, value, now, 0) for key, value in metrics.items()]
    )
    return metrics


@task(name="record-run-cost", cache_policy=NO_CACHE)
def record_cost_task(config: PerennialConfig, run_id: str, cost: RunCost) -> RunCost:
    record_cost(config, run_id, cost)
    return cost


def recent_costs(config: PerennialConfig, limit: int = 5) -> list[dict[str, Any]]:
    """The newest training runs that recorded a cost, newest first (`perennial status`)."""
    from mlflow.exceptions import MlflowException

    from tasks.registry.client import connect

    client = connect(config)
    try:
        experiment = client.get_experiment_by_name(config.dataset)
        if experiment is None:
            return []
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"metrics.{METRIC_PREFIX}usd >= 0",
            order_by=["attributes.start_time DESC"],
            max_results=limit,
        )
        versions = {
            v.run_id: str(v.version)
            for v in client.search_model_versions(f"name = '{config.model_name}'")
        }
    except MlflowException:
        return []
    return [
        {
            "run_id": run.info.run_id,
            "version": versions.get(run.info.run_id),
            **{
                name: run.data.metrics[METRIC_PREFIX + name]
                for name in TOTALS
                if METRIC_PREFIX + name in run.data.metrics
            },
        }
        for run in runs
    ]
