"""Every refused command prints one line (what, why, what next) and exits 1 (2 for a config
that does not load: a usage error), with no traceback; and a command run as the README says,
without the Makefile's environment, prints no telemetry error, pydantic or pickle warning.

All through the real console script in subprocesses, on one tiny synthetic dataset (the sensors
YAML of test_second_dataset): landed and profiled once, no model trained, since every refusal
here comes before one exists."""

from __future__ import annotations

import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.batches import expand_range
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.ingest import land_batch
from tasks.data.source import extract_from_source
from tasks.data.suite import profile_landed
from tests.conftest import ROOT, run_perennial
from tests.integration.test_second_dataset import CONFIG, write_week

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# What the Makefile exports and a user's shell does not; stripped to run as the README says.
MAKEFILE_ENVIRONMENT = (
    "MLFLOW_DISABLE_TELEMETRY",
    "PREFECT_SERVER_ANALYTICS_ENABLED",
    "DO_NOT_TRACK",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
    "PREFECT_API_URL",
    "PERENNIAL_HOME",
    "PERENNIAL_DEBUG",
)


def sensors_project(folder: Path, profiled: bool) -> Path:
    """A sensors config with weeks W01-W05 in its source folder: W04 has a single class (no
    peak above 80), W05 fails the gate (load far out of range). With `profiled`, W01-W03 are
    landed and the suite is drafted from W01-W02."""
    (folder / "incoming").mkdir(parents=True)
    config_path = folder / "sensors.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    weeks = expand_range("2024-W01..2024-W05", config.time)
    for seed, week in enumerate(weeks):
        write_week(folder / "incoming", week, seed)
    for week, column, value in ((weeks[3], "peak", 10.0), (weeks[4], "load", 5000.0)):
        path = folder / "incoming" / f"{week}.csv"
        frame = pd.read_csv(path)
        frame[column] = value
        frame.to_csv(path, index=False)
    if profiled:
        storage = Storage(config.home)
        for week in weeks[:3]:
            land_batch(storage, config, week, *extract_from_source(config, week))
        profile_landed(storage, config, weeks[:2])
    return config_path


def lines_of(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_every_refusal_is_one_line_without_a_traceback(
    prefect_api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)
    monkeypatch.delenv("PERENNIAL_DEBUG", raising=False)
    sensors = str(sensors_project(tmp_path / "project", profiled=True))
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: x\n")
    # (arguments, exit code, words the one line must hold)
    cases = [
        (["status", "-c", str(bad)], 2, ["field 'source'"]),
        (["ingest", "-b", "../etc", "-c", sensors], 1, ["not a week id"]),
        (["ingest", "-b", "2024-W30", "-c", sensors], 1, ["2024-W30.csv", "file not found"]),
        (["train", "--batches", "2024-W01..2024-W05", "-c", sensors], 1, ["2024-W05"]),
        # one label for every row: refused by the gate's reference checks before training
        (
            ["train", "--batches", "2024-W01..2024-W04", "-c", sensors],
            1,
            ["2024-W04", "reference_label_rate on peak"],
        ),
        (["predict", "-b", "2024-W03", "-c", sensors], 1, ["no champion", "train"]),
        (["monitor", "-b", "2024-W03", "-c", sensors], 1, ["no champion", "train"]),
        (["rollback", "-c", sensors], 1, ["no champion", "perennial train"]),
    ]
    env = {"PREFECT_API_URL": prefect_api_url}
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda case: run_perennial(env, *case[0], timeout=600), cases))

    wrong = []  # every case checked before failing, so one run shows every broken refusal
    for (arguments, code, words), done in zip(cases, runs, strict=True):
        output = done.stdout + done.stderr
        if (
            "Traceback" in output
            or len(lines_of(done)) != 1
            or done.returncode != code
            or not all(word in output for word in words)
        ):
            wrong.append(f"{arguments} exit {done.returncode}:\n{output[-2000:]}")
    assert not wrong, "\n\n".join(wrong)

    # --debug gives the traceback back, and the same reason.
    debug = run_perennial(env, "--debug", "rollback", "-c", sensors, timeout=600)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "no champion" in lines_of(debug)[-1]


def test_a_command_run_as_the_readme_says_prints_no_noise(tmp_path: Path) -> None:
    sensors = sensors_project(tmp_path / "project", profiled=False)
    prefect_home = tmp_path / "prefect"
    prefect_home.mkdir()
    env = {
        name: value for name, value in os.environ.items() if name not in MAKEFILE_ENVIRONMENT
    } | {"PREFECT_HOME": str(prefect_home)}

    def perennial(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ROOT / ".venv" / "bin" / "perennial"), *arguments],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    status = perennial("status", "-c", str(sensors))
    # With no suite yet, on Prefect's ephemeral server (started within the CLI's own timeout).
    no_suite = perennial("ingest", "-b", "2024-W01", "-c", str(sensors))

    assert status.returncode == 0, status.stderr[-3000:]
    assert no_suite.returncode == 1, no_suite.stderr[-3000:]
    assert (
        lines_of(no_suite)
        == [
            line
            for line in lines_of(no_suite)
            if "no suite for sensors" in line and "perennial validate --profile" in line
        ]
        and len(lines_of(no_suite)) == 1
    ), no_suite.stderr[-3000:]
    for done in (status, no_suite):
        for noise in ("telemetry", "UserWarning", "pickle", "Traceback"):
            assert noise not in done.stderr, done.stderr[-3000:]
