"""The pipeline benchmark's own logic: the seed it gives the plain script really reaches the
script's sampler, and the AUC verdict says what its interval says."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipeline() -> Any:
    spec = importlib.util.spec_from_file_location("pipeline", ROOT / "benchmarks" / "pipeline.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A stand-in for the anchor: hard-codes seed 42 as the anchor does, reads its arguments.
FAKE_ANCHOR = """import sys, optuna
study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=42))
print(sys.argv[1:], study.ask().suggest_float("x", 0, 1))
"""


def first_draw(seed: int) -> float:
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    return float(study.ask().suggest_float("x", 0, 1))


@pytest.mark.parametrize("seed", [42, 7])
def test_the_seeded_anchor_runs_the_script_with_only_the_seed_replaced(
    pipeline: Any, tmp_path: Path, seed: int
) -> None:
    anchor = tmp_path / "anchor.py"
    anchor.write_text(FAKE_ANCHOR)
    command = [sys.executable, "-c", pipeline.SEEDED_ANCHOR, str(seed), str(anchor), "12", "40"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split("]")
    assert out[0] + "]" == "['12', '40']"  # the script sees its own arguments, not the seed
    assert float(out[1]) == first_draw(seed)


def pairs(differences: list[float]) -> list[dict[str, Any]]:
    return [
        {"perennial": {"holdout_auc": 0.71 + d}, "script": {"holdout_auc": 0.71}}
        for d in differences
    ]


def test_the_auc_verdict_follows_the_interval(pipeline: Any) -> None:
    lower = pipeline.auc_difference(pairs([-0.004, -0.005, -0.006, -0.005]))
    assert lower["ci95"][1] < 0 and lower["verdict"].startswith("Perennial lower")
    higher = pipeline.auc_difference(pairs([0.004, 0.005, 0.006, 0.005]))
    assert higher["ci95"][0] > 0 and higher["verdict"].startswith("Perennial higher")
    mixed = pipeline.auc_difference(pairs([-0.01, 0.008, -0.002, 0.006]))
    assert mixed["ci95"][0] < 0 < mixed["ci95"][1]
    assert mixed["verdict"] == "no difference at 95% over 4 seeds"
    assert pipeline.auc_difference(pairs([0.001]))["ci95"] is None


def regression_pairs(perennial: list[float], script: list[float]) -> list[dict[str, Any]]:
    return [
        {
            "seed": 42 + i,
            "ratio": 3.0,
            "perennial": {"holdout_rmse": p, "wall_s": 60.0},
            "script": {"holdout_rmse": s, "naive_rmse": 46.9, "wall_s": 20.0},
        }
        for i, (p, s) in enumerate(zip(perennial, script, strict=True))
    ]


def test_the_regression_row_holds_perennial_against_the_script_interval(pipeline: Any) -> None:
    from argparse import Namespace

    args = Namespace(trials=40, pairs=4)
    script = [44.0, 44.3, 43.9, 44.2]
    within = pipeline.regression_row(args, regression_pairs([44.2, 44.1, 44.4, 44.0], script), 5.0)
    assert within["perennial_within_script_interval_or_better"] is True
    assert within["script_rmse_ci95"][0] < 44.1 < within["script_rmse_ci95"][1]
    assert within["naive_rmse"] == 46.9 and within["median_ratio"] == 3.0  # 60 s / 20 s
    better = pipeline.regression_row(args, regression_pairs([43.0, 43.1, 42.9, 43.2], script), 5.0)
    assert better["perennial_within_script_interval_or_better"] is True
    assert better["rmse_difference"]["verdict"].startswith("Perennial lower (better)")
    worse = pipeline.regression_row(args, regression_pairs([46.0, 46.2, 45.9, 46.1], script), 5.0)
    assert worse["perennial_within_script_interval_or_better"] is False
    assert worse["rmse_difference"]["verdict"].startswith("Perennial higher (worse)")
