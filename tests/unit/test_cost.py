"""Cost per run: the stage meter on known workloads, and the price put on it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from tasks.core.config_cost import CostConfig
from tasks.registry.cost import CostMeter, RunCost, StageCost

MB = 1024 * 1024


def test_stage_records_cpu_bytes_and_memory_of_a_known_workload(tmp_path: Path) -> None:
    meter = CostMeter()
    payload = np.random.default_rng(0).bytes(8 * MB)
    with meter.stage("work"):
        digest = b""
        for _ in range(200):  # CPU-bound
            digest = hashlib.sha256(payload[:MB] + digest).digest()
        (tmp_path / "out.bin").write_bytes(payload)
        read_back = (tmp_path / "out.bin").read_bytes()
        held = np.ones(300 * MB // 8)  # 300 MB resident
        held.sum()
    del held
    with meter.stage("idle"):
        pass
    work, idle = meter.cost.stages
    assert work.stage == "work" and len(read_back) == len(payload)
    assert work.cpu_seconds > 0 and work.wall_seconds > 0
    assert work.written_bytes is not None and work.written_bytes >= len(payload)
    assert work.read_bytes is not None and work.read_bytes >= len(payload)
    assert work.peak_rss_mb >= 300
    # A stage that allocates nothing peaks at what stays resident, not at the run's high mark.
    assert idle.peak_rss_mb < work.peak_rss_mb - 200
    assert idle.written_bytes is not None and idle.written_bytes < MB


def test_stage_is_recorded_when_the_work_fails() -> None:
    meter = CostMeter()
    with pytest.raises(ZeroDivisionError), meter.stage("broken"):
        _ = 1 / 0
    assert [s.stage for s in meter.cost.stages] == ["broken"]


def test_price_metrics_and_card_line_of_a_hand_made_run() -> None:
    cost = RunCost(
        [
            StageCost("tune", 3600.0, 7200.0, 1024.0, 10, 20),
            StageCost("train", 1800.0, 1800.0, 2048.0, 5, 5),
        ]
    )
    prices = CostConfig(vcpu_hour_usd=0.04, gb_hour_usd=0.005)
    totals = cost.totals(prices)
    # 2.5 CPU hours x 0.04 + 2 GB peak x 1.5 wall hours x 0.005
    assert totals["usd"] == pytest.approx(2.5 * 0.04 + 2 * 1.5 * 0.005)
    assert totals["read_bytes"] == 15 and totals["written_bytes"] == 25
    metrics = cost.metrics(prices)
    assert metrics["cost_tune_cpu_seconds"] == 7200.0
    assert metrics["cost_train_peak_rss_mb"] == 2048.0
    assert metrics["cost_wall_seconds"] == 5400.0 and metrics["cost_peak_rss_mb"] == 2048.0
    line = cost.card_line(prices)
    assert "$0.115000" in line and prices.prices_as_of in line and "tune 3600.0 s" in line


def test_default_prices_are_fargate_us_east_1_with_their_date() -> None:
    prices = CostConfig()
    assert (prices.vcpu_hour_usd, prices.gb_hour_usd) == (0.04048, 0.004445)
    assert "2026-06" in prices.prices_as_of
    with pytest.raises(ValueError):
        CostConfig(vcpu_hour_usd=-1)
