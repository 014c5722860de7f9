"""What each install gets, read from uv.lock for Linux, macOS and Windows: the CPU build of XGBoost
by default (no NVIDIA package), the CUDA build only with the `gpu` extra, never both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.conftest import ROOT

PLATFORMS = {
    "linux": {"sys_platform": "linux", "platform_system": "Linux"},
    "macos": {"sys_platform": "darwin", "platform_system": "Darwin"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows"},
}
# The image's sync (infra/Dockerfile), the demo's and the tests' (Makefile), and the GPU opt-in.
INSTALLS = {
    "image": ["--no-dev", "--extra", "aws", "--extra", "cpu"],
    "demo": ["--no-dev", "--extra", "cpu"],
    "test": ["--group", "dev", "--group", "docs", "--extra", "cpu"],
    "gpu": ["--no-dev", "--extra", "gpu"],
}


def uv() -> list[str]:
    found = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV
    return [found] if found else [sys.executable, "-m", "uv"]


def installed(flags: list[str], platform: str) -> dict[str, str]:
    """{package: version} that `uv sync --frozen <flags>` installs on `platform`, Python 3.11."""
    exported = subprocess.run(
        [*uv(), "export", "--frozen", "--no-hashes", "--no-emit-project", "--quiet", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    environment = {
        **PLATFORMS[platform],
        "python_version": "3.11",
        "python_full_version": "3.11.7",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    found = {}
    for line in exported.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            found[requirement.name] = str(requirement.specifier).removeprefix("==")
    return found


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("install", ["image", "demo", "test"])
def test_the_default_installs_have_the_cpu_build_and_no_nvidia(install: str, platform: str):
    packages = installed(INSTALLS[install], platform)
    assert not [name for name in packages if name.startswith("nvidia")], packages
    # macOS has no xgboost-cpu wheel, and its xgboost wheel is the CPU build.
    cpu_build = "xgboost" if platform == "macos" else "xgboost-cpu"
    builds = {name: packages[name] for name in ("xgboost", "xgboost-cpu") if name in packages}
    assert builds == {cpu_build: "3.2.0"}, builds  # the version the lock had before the split


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_gpu_extra_has_the_cuda_build_only(platform: str) -> None:
    packages = installed(INSTALLS["gpu"], platform)
    assert packages.get("xgboost") == "3.2.0" and "xgboost-cpu" not in packages, packages
    assert ("nvidia-nccl-cu12" in packages) == (platform == "linux"), packages


def test_the_two_builds_are_declared_to_conflict_and_neither_is_a_base_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    base = [Requirement(r).name for r in project["project"]["dependencies"]]
    assert not {"xgboost", "xgboost-cpu"} & set(base), base
    assert [{"extra": "cpu"}, {"extra": "gpu"}] in project["tool"]["uv"]["conflicts"]
    both = subprocess.run(
        [*uv(), "export", "--frozen", "--quiet", "--extra", "cpu", "--extra", "gpu"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert both.returncode != 0 and "conflict" in both.stderr.lower(), both.stderr
