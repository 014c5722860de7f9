"""Lineage: where a model came from, as flat string tags for the MLflow registry."""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

TRACKED_PACKAGES = (
    "perennial",
    "prefect",
    "mlflow",
    "great-expectations",
    "optuna",
    "xgboost",  # the CUDA build (the `gpu` extra; on macOS, the only build)
    "xgboost-cpu",  # the CPU build (the `cpu` extra): the same module, `xgboost`
    "scikit-learn",
    "pandas",
    "numpy",
)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def package_versions() -> dict[str, str]:
    found = {}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def git_state(root: Path = PROJECT_ROOT) -> tuple[str, bool]:
    """(commit sha, dirty?) of the code, or ("unknown", False) outside a git checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return sha, bool(status.strip())


def lineage_tags(
    *,
    batches: list[str],
    batch_hashes: dict[str, str],
    suite: str,
    gate_summary: str,
    config_hash: str,
    study: str,
    best_trial: int,
    seed: int,
    flow_run_id: str | None,
) -> dict[str, str]:
    sha, dirty = git_state()
    return {
        "perennial.batches": ",".join(batches),
        "perennial.batch_hashes": json.dumps(batch_hashes, sort_keys=True),
        "perennial.ge_suite": suite,
        "perennial.ge_result": gate_summary,
        "perennial.config_hash": config_hash,
        "perennial.git_sha": sha,
        "perennial.git_dirty": str(dirty).lower(),
        "perennial.optuna_study": study,
        "perennial.optuna_trial": str(best_trial),
        "perennial.seed": str(seed),
        "perennial.package_versions": json.dumps(package_versions(), sort_keys=True),
        "perennial.prefect_flow_run_id": flow_run_id or "none",
    }


TRAINED_ON_TAG = "perennial.trained_on"  # batches the registered model was trained on
JUDGED_ON_TAG = "perennial.judged_on"  # the holdout its recipe was judged on, unseen


def batches_seen(tags: dict[str, str]) -> list[str]:
    """The batches a registered model was trained on, from its version tags (a version
    registered before refits carries no `perennial.trained_on`: it saw every batch of its run
    but the newest, its holdout)."""
    if tags.get(TRAINED_ON_TAG):
        return tags[TRAINED_ON_TAG].split(",")
    return [b for b in tags.get("perennial.batches", "").split(",") if b][:-1]


def judged_on(tags: dict[str, str]) -> str:
    """The holdout batch that judged a registered model's recipe."""
    return tags.get(JUDGED_ON_TAG) or tags.get("perennial.batches", "").split(",")[-1]
