"""Every batch id from outside is checked against the dataset's period before it reaches a path:
at the CLI (one line, exit 1, no Prefect server started, nothing in storage touched), in the
source's path template, and in the catalog where every storage key is spelled. The flows
themselves refuse too: tests/integration/test_flow_batch_refusals.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core import catalog
from tasks.core.batches import BatchIdError
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.ingest import land_batch
from tasks.data.source import extract_from_source
from tests.conftest import run_perennial
from tests.integration.test_second_dataset import CONFIG, write_week

# What once reached storage through `validate -b`
TRAVERSAL = "../../landing/sensors/2024-W01"


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with its content hash: what 'nothing moved' means."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def landed_sensors(folder: Path) -> Path:
    """A weekly dataset in `folder` with one landed batch; returns its YAML."""
    (folder / "incoming").mkdir()
    path = folder / "sensors.yaml"
    path.write_text(CONFIG)
    config = load_config(path)
    write_week(folder / "incoming", "2024-W01", 0)
    land_batch(Storage(config.home), config, "2024-W01", *extract_from_source(config, "2024-W01"))
    return path


@pytest.fixture
def sensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("PERENNIAL_HOME", raising=False)  # the YAML's own home
    return landed_sensors(tmp_path)


def test_cli_validate_refuses_a_path_as_batch_in_one_line_and_moves_nothing(
    sensors: Path,
) -> None:
    # A real process: its whole stderr is the one line (no traceback, no Prefect log).
    batch = TRAVERSAL
    before = snapshot(sensors.parent)
    result = run_perennial(
        {"PREFECT_HOME": str(sensors.parent / "prefect")},
        "validate",
        "-b",
        batch,
        "--config",
        str(sensors),
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no traceback, no Prefect log
    assert lines[0].startswith(f"rejected: batch {batch[:40]!r} is not a week id"), lines[0]
    assert "Starting temporary server" not in result.stdout + result.stderr
    assert snapshot(sensors.parent) == before


@pytest.mark.parametrize(
    ("command", "value"),
    [
        ("validate", "2024-W54"),  # not a week of 2024
        ("validate", "2024-W01/../2024-W02"),
        ("validate", "/etc/passwd"),
        ("ingest", "../x"),
        ("predict", "2024-W01/.."),
        ("monitor", "/tmp"),
        ("train", "2024-W01..2024-W99"),
        ("validate --profile", "../../landing"),
    ],
)
def test_every_cli_command_taking_batches_refuses_bad_ids(
    sensors: Path, command: str, value: str
) -> None:
    before = snapshot(sensors.parent)
    option = "--batches" if command == "train" else "" if "--profile" in command else "-b"
    args = [*command.split(), *([option] if option else []), value, "--config", str(sensors)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("rejected: batch"), result.output
    assert snapshot(sensors.parent) == before


def test_the_source_path_template_is_formatted_only_after_the_check(sensors: Path) -> None:
    config = load_config(sensors)
    secret = sensors.parent / "secret.csv"
    secret.write_text("measured_at,load\n")
    # `incoming/{batch}.csv` with `../secret` would read a file outside the source folder
    with pytest.raises(BatchIdError, match="not a week id"):
        extract_from_source(config, "../secret")


@pytest.mark.parametrize("entry", ["validated", "validated_summary", "predictions", "drift_plot"])
def test_no_storage_key_is_spelled_from_an_unchecked_batch(sensors: Path, entry: str) -> None:
    config = load_config(sensors)
    assert catalog.key(entry, config, batch="2024-W01")  # type: ignore[arg-type]
    with pytest.raises(BatchIdError):
        catalog.key(entry, config, batch=TRAVERSAL)  # type: ignore[arg-type]
    with pytest.raises(BatchIdError):
        catalog.landing_key(config, "2024-W01/../../x", ".csv")
    with pytest.raises(BatchIdError):
        catalog.quarantine_reason_key(config, "2024-W01/../../x")
