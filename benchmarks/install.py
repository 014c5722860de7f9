"""First contact: what a fresh clone installs, what a cold cache downloads, and how long from
`git clone` to the demo's first printed month.

    .venv/bin/python benchmarks/install.py [--demo-timeout 1200] [--keep]

In a temporary folder: `git clone` this repository at its HEAD commit, run `make demo` until it
prints its first month (then stop it, and the local Prefect server it started), measure the
demo's environment, run `make install` (the install step of `make test`) and measure the
tests' environment. The image's runtime (infra/Dockerfile's sync) and the CUDA runtime (the
`gpu` extra, for comparison) are synced into folders of their own. Sizes are bytes on disk
(`du`): `env_mb` with bytecode (for the demo: the bytecode Python wrote by its first month; the
tests and the image compile it all at install), `packages_mb` without it. Downloads are computed
from uv.lock: the size of the wheel uv would pick for this interpreter, summed over what each
install contains (`uv export`); the uv cache is never emptied. With a warm cache, the time to the
first month is install + Prefect start + landing and gating three months + the first search and
fit: on a busy machine it may not be reached within --demo-timeout, and the file then says so.

Writes benchmarks/results/install.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "install.json"
UV = shutil.which("uv") or "uv"
# What make and infra/Dockerfile run (Makefile: SYNC, `runtime`, `install`).
SYNCS = {
    "demo": ["--no-dev", "--extra", "cpu"],
    "test": ["--group", "dev", "--group", "docs", "--extra", "cpu"],
    "image": ["--no-dev", "--extra", "aws", "--extra", "cpu"],
    "gpu": ["--no-dev", "--extra", "gpu"],
}
FIRST_MONTH = re.compile(r"month: (\d{4}-\d{2})")
# Settings of the shell that runs the benchmark that would point the clone elsewhere; and
# PYTHONDONTWRITEBYTECODE: a first contact has Python's default (bytecode written at first import).
FOREIGN = (
    "VIRTUAL_ENV",
    "UV_PROJECT_ENVIRONMENT",
    "PYTHONPATH",
    "UV_NO_CACHE",
    "PYTHONDONTWRITEBYTECODE",
)
FOREIGN_PREFIXES = ("PERENNIAL_", "PREFECT_", "MLFLOW_")


def clean_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in FOREIGN and not name.startswith(FOREIGN_PREFIXES)
    }


def size_mb(folder: Path, bytecode: bool = True) -> float:
    """Bytes on disk under `folder`, as `du` counts them; without `.pyc` files if not `bytecode`."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and (bytecode or path.suffix != ".pyc"):
            total += path.stat().st_blocks * 512
    return round(total / 2**20, 1)


def installed_packages(venv: Path) -> dict[str, str]:
    """{distribution: version} of a virtual environment's site-packages."""
    found = {}
    for info in venv.glob("lib/python3.*/site-packages/*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
        found[name.lower().replace("_", "-")] = version
    return found


def environment_report(venv: Path, bytecode: bool = True) -> dict[str, Any]:
    packages = installed_packages(venv)
    builds = sorted(f"{n} {v}" for n, v in packages.items() if n in ("xgboost", "xgboost-cpu"))
    return {
        "env_mb": size_mb(venv) if bytecode else None,
        "packages_mb": size_mb(venv, bytecode=False),
        "packages": len(packages),
        "nvidia_packages": sorted(n for n in packages if n.startswith("nvidia")),
        "xgboost_build": builds,
    }


def cold_cache_download(flags: list[str]) -> dict[str, Any]:
    """Bytes a cold uv cache downloads for `uv sync --frozen <flags>` here: for each locked
    package this interpreter installs, the wheel uv would pick (the first of this interpreter's
    tags that a wheel matches), from the sizes uv.lock records."""
    exported = subprocess.run(
        [UV, "export", "--frozen", "--no-hashes", "--no-emit-project", "--quiet", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = {}
    for line in exported.splitlines():
        if line and not line.startswith(("#", " ")):
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                wanted[requirement.name] = str(requirement.specifier).removeprefix("==")
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    rank = {tag: index for index, tag in enumerate(sys_tags())}
    total, largest, sdists = 0, [], []
    for package in lock["package"]:
        name = package["name"]
        if wanted.get(name) != package.get("version"):
            continue
        best = None
        for wheel in package.get("wheels", []):
            tags = parse_wheel_filename(wheel["url"].rsplit("/", 1)[1])[3]
            score = min((rank[tag] for tag in tags if tag in rank), default=None)
            if score is not None and (best is None or score < best[0]):
                best = (score, wheel["size"])
        if best is None:
            sdists.append(name)
            size = package.get("sdist", {}).get("size", 0)
        else:
            size = best[1]
        total += size
        largest.append((size, name))
    largest.sort(reverse=True)
    return {
        "download_mb": round(total / 2**20, 1),
        "locked_packages": len(largest),
        "largest_downloads_mb": {name: round(size / 2**20, 1) for size, name in largest[:5]},
        "sdists": sdists,
    }


def stop_group(process: subprocess.Popen[str], grace_s: float = 20) -> None:
    """SIGTERM to the process group (make and what it started), SIGKILL after `grace_s`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def first_contact(clone: Path, timeout_s: float) -> dict[str, Any]:
    """`git clone`, then `make demo` until its first month: seconds from the clone's start."""
    env = clean_environment()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    started = time.monotonic()
    subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "--quiet", commit], check=True)
    cloned = time.monotonic() - started
    demo = subprocess.Popen(
        ["make", "demo"],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert demo.stdout is not None
    installed_s = month_s = None
    month_line = ""
    tail: list[str] = []
    watch = selectors.DefaultSelector()
    watch.register(demo.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() - started < timeout_s:
            if not watch.select(timeout=5):
                continue
            line = demo.stdout.readline()
            if not line:
                break  # make ended before the first month
            tail = [*tail[-19:], line.rstrip()]
            if installed_s is None and "perennial demo" in line:  # make echoes the command
                installed_s = time.monotonic() - started
            if FIRST_MONTH.search(line):
                month_s, month_line = time.monotonic() - started, line.strip()
                break
    finally:
        stop_group(demo)
        # The shared local Prefect server the demo started outlives it (see the docs): stop it.
        subprocess.run(["make", "down"], cwd=clone, env=env, capture_output=True, timeout=120)
    return {
        "commit": commit,
        "clone_s": round(cloned, 1),
        "clone_and_install_s": round(installed_s, 1) if installed_s else None,
        "first_month_s": round(month_s, 1) if month_s else None,
        "first_month_line": month_line,
        "timeout_s": timeout_s,
        "note": ""
        if month_s
        else "the first month was not printed within timeout_s: clone_and_install_s is the "
        "figure measured; last lines: " + " / ".join(tail[-5:]),
    }


def timed_sync(project: Path, venv: Path | None, flags: list[str], bytecode: bool) -> float:
    """`uv sync --frozen <flags>` of `project` into `venv` (none: the project's .venv)."""
    env = clean_environment()
    if venv is not None:
        env["UV_PROJECT_ENVIRONMENT"] = str(venv)
        env["UV_LINK_MODE"] = "copy"  # as infra/Dockerfile: no hard links into a cache
    started = time.monotonic()
    command = [UV, "sync", "--frozen", "--quiet", *flags]
    subprocess.run([*command, "--compile-bytecode"] if bytecode else command, cwd=project, env=env)
    return round(time.monotonic() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo-timeout", type=float, default=1200.0)
    parser.add_argument("--keep", action="store_true", help="Keep the temporary folder.")
    args = parser.parse_args()
    load_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="perennial-install-"))
    clone = scratch / "perennial"
    try:
        contact = first_contact(clone, args.demo_timeout)
        demo = environment_report(clone / ".venv")
        started = time.monotonic()
        subprocess.run(["make", "install"], cwd=clone, env=clean_environment(), check=True)
        test_install_s = round(time.monotonic() - started, 1)
        test = environment_report(clone / ".venv")
        image_s = timed_sync(clone, scratch / "image", SYNCS["image"], bytecode=True)
        image = environment_report(scratch / "image")
        gpu_s = timed_sync(clone, scratch / "gpu", SYNCS["gpu"], bytecode=False)
        gpu = environment_report(scratch / "gpu", bytecode=False)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    results = {
        "what": "a fresh clone's environments (MB on disk; packages_mb: without bytecode, as "
        "make demo installs it; env_mb: with bytecode, for the demo what Python wrote by its "
        "first month, for the tests and the image all of it, compiled at install), the MB a cold "
        "uv cache downloads for each (from uv.lock), and the seconds from git clone to the "
        "demo's first month with a warm cache",
        "python": platform.python_version(),
        "platform": f"{sys.platform} {platform.machine()}",
        "uv": subprocess.run([UV, "--version"], capture_output=True, text=True).stdout.strip(),
        "cores": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "first_contact": contact,
        "demo": {
            "command": "make demo: uv sync --frozen --extra cpu --no-dev",
            **demo,
            **cold_cache_download(SYNCS["demo"]),
        },
        "test": {
            "command": "make test (its install): uv sync --frozen --compile-bytecode --extra cpu "
            "--group dev --group docs",
            "install_after_demo_s": test_install_s,
            **test,
            **cold_cache_download(SYNCS["test"]),
        },
        "image": {
            "command": "infra/Dockerfile: uv sync --frozen --no-dev --extra aws --extra cpu "
            "(UV_COMPILE_BYTECODE=1)",
            "install_s": image_s,
            **image,
            **cold_cache_download(SYNCS["image"]),
        },
        "gpu": {
            "command": "uv sync --frozen --no-dev --extra gpu (the CUDA build; no bytecode)",
            "install_s": gpu_s,
            **gpu,
            **cold_cache_download(SYNCS["gpu"]),
        },
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
