"""Device: which XGBoost build is installed, and whether it can train where a dataset's YAML asks
(`training.device`).

The default install has the CPU build (`xgboost-cpu`, the `cpu` extra: 6 MB); the CUDA build
(`xgboost`, the `gpu` extra) adds about 700 MB on Linux. Both provide the module `xgboost`, so the
code imports it the same way; but the CPU build given `device: cuda`, and the CUDA build on a
machine with no GPU, only warn and train on the CPU. A run that asked for a GPU is refused instead,
in one line that says what to install or change."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version
from types import ModuleType
from typing import Any

from tasks.core.config import PerennialConfig
from tasks.core.config_section import ConfigError

# The distributions that install the module `xgboost`: the CUDA build first (the `gpu` extra),
# then the CPU build (the `cpu` extra). Never both: they overwrite each other's files.
XGBOOST_DISTRIBUTIONS = ("xgboost", "xgboost-cpu")
INSTALL_CPU = "`uv sync --extra cpu` (what make runs)"
INSTALL_GPU = "`uv sync --extra gpu` (or `make demo XGBOOST=gpu`)"


class DeviceError(ConfigError):
    """XGBoost missing, or a device this machine cannot train on; the message says what to do."""


def xgboost_module() -> ModuleType:
    """The `xgboost` module, or a DeviceError naming the extra to install."""
    try:
        import xgboost
    except ImportError as exc:
        raise DeviceError(
            f"XGBoost is not installed: install the CPU build with {INSTALL_CPU}, "
            f"or the CUDA build with {INSTALL_GPU}"
        ) from exc
    return xgboost


def xgboost_distribution() -> tuple[str, str]:
    """(distribution, version) of the installed XGBoost build, e.g. ("xgboost-cpu", "3.2.0"):
    what a model's pip requirements and lineage must name."""
    for name in XGBOOST_DISTRIBUTIONS:
        try:
            return name, version(name)
        except PackageNotFoundError:
            continue
    xgboost_module()  # raises the refusal when the module is missing too
    return "xgboost", "unknown"  # a module with no distribution metadata (a source build)


@functools.cache
def gpu_visible() -> bool:
    """Whether the installed build trains on a GPU: one round on 8 rows with `device: cuda`.
    XGBoost falls back to the CPU (with a warning) when it finds none, and says so in the
    booster's configuration."""
    import json
    import warnings

    import numpy as np

    xgb = xgboost_module()
    rows = xgb.DMatrix(np.arange(16, dtype=np.float32).reshape(8, 2), label=[0, 1] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No visible GPU is found, setting device to CPU"
        booster = xgb.train({"device": "cuda", "verbosity": 0}, rows, num_boost_round=1)
    device: str = json.loads(booster.save_config())["learner"]["generic_param"]["device"]
    return device.startswith("cuda")


def cuda_build(xgb: Any) -> bool:
    return bool(xgb.build_info().get("USE_CUDA"))


def training_device(config: PerennialConfig) -> str:
    """The XGBoost `device` of the config's training: "cpu", or "cuda" once the CUDA build and a
    GPU are found. Raises DeviceError, one line, naming the YAML and what to install."""
    device = config.training.device
    xgb = xgboost_module()
    if device == "cpu":
        return device
    where = f"{config.config_path or 'config'}: training.device is {device}"
    if not cuda_build(xgb):
        name, installed = xgboost_distribution()
        raise DeviceError(
            f"{where}, but the installed XGBoost ({name} {installed}) is the CPU build: "
            f"install the CUDA build with {INSTALL_GPU}, or set training.device: cpu"
        )
    if not gpu_visible():
        raise DeviceError(
            f"{where}, but XGBoost finds no GPU on this machine: run on a machine with an "
            "NVIDIA GPU and its driver, or set training.device: cpu"
        )
    return device
