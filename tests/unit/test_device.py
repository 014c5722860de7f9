"""`training.device`: cuda needs the CUDA build of XGBoost and a GPU; without either, training is
refused in one line that says what to install or change. And XGBoost itself is an extra."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.learn import device
from tasks.learn.device import DeviceError, training_device, xgboost_distribution, xgboost_module
from tests.conftest import FLIGHTS, run_perennial


def _flights(tmp_path: Path, training: str = "") -> Path:
    path = tmp_path / "flights.yaml"
    text = FLIGHTS.read_text().replace("home: ../.perennial", f"home: {tmp_path}")
    path.write_text(text + (f"\ntraining: {training}\n" if training else ""))
    return path


def _one_line(error: pytest.ExceptionInfo[DeviceError]) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_cpu_by_default_and_in_the_fingerprint_not_at_all(tmp_path: Path) -> None:
    config = load_config(_flights(tmp_path))
    assert config.training.device == "cpu"
    assert training_device(config) == "cpu"
    cuda = load_config(_flights(tmp_path, "{device: cuda}"))
    assert cuda.training.device == "cuda"
    assert cuda.fingerprint() == config.fingerprint()  # where it trains does not shape it


def test_cuda_with_the_cpu_build_is_refused_naming_the_gpu_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device, "cuda_build", lambda xgb: False)
    config = load_config(_flights(tmp_path, "{device: cuda}"))
    with pytest.raises(DeviceError) as refused:
        training_device(config)
    message = _one_line(refused)
    assert str(config.config_path) in message and "training.device is cuda" in message
    assert "CPU build" in message and "uv sync --extra gpu" in message


def test_cuda_without_a_gpu_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "cuda_build", lambda xgb: True)
    monkeypatch.setattr(device, "gpu_visible", lambda: False)
    with pytest.raises(DeviceError) as refused:
        training_device(load_config(_flights(tmp_path, "{device: cuda}")))
    assert "finds no GPU" in _one_line(refused)


def test_cuda_with_the_cuda_build_and_a_gpu_trains_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(device, "cuda_build", lambda xgb: True)
    monkeypatch.setattr(device, "gpu_visible", lambda: True)
    assert training_device(load_config(_flights(tmp_path, "{device: cuda}"))) == "cuda"


@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has a GPU")
def test_the_probe_finds_no_gpu_here() -> None:
    """XGBoost only warns and trains on the CPU when asked for a GPU it cannot find: the probe
    reads where the booster really trained."""
    device.gpu_visible.cache_clear()
    assert device.gpu_visible() is False


def test_missing_xgboost_is_refused_naming_both_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "xgboost", None)  # `import xgboost` raises ImportError
    with pytest.raises(DeviceError) as refused:
        xgboost_module()
    message = _one_line(refused)
    assert "uv sync --extra cpu" in message and "uv sync --extra gpu" in message


def test_the_installed_build_is_named_by_its_distribution() -> None:
    name, installed = xgboost_distribution()
    assert name in ("xgboost", "xgboost-cpu")
    assert installed == xgboost_module().__version__


@pytest.mark.skipif(device.cuda_build(xgboost_module()), reason="the CUDA build is installed")
def test_train_command_refuses_cuda_in_one_line_before_any_flow(tmp_path: Path) -> None:
    """The real command with the CPU build installed (what `make` installs): exit 1, one line."""
    done = run_perennial({}, "train", "--config", str(_flights(tmp_path, "{device: cuda}")))
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "uv sync --extra gpu" in lines[0], done.stderr
    assert "Starting" not in done.stdout + done.stderr  # refused before Prefect starts
