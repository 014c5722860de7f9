import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import ROOT

HEAVY = ("prefect", "mlflow", "great_expectations", "optuna", "xgboost", "sklearn", "pandas")


def test_help_imports_nothing_heavy() -> None:
    code = f"import sys, flows.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "ingest", "validate", "train", "status"):
        assert command in result.output


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: x\n")
    result = CliRunner().invoke(app, ["status", "--config", str(bad)])
    assert result.exit_code == 2
    assert "field 'source'" in result.output


def test_unknown_option_is_a_usage_error() -> None:
    assert CliRunner().invoke(app, ["train", "--trails", "3"]).exit_code == 2


def test_status_without_a_model(home: Path) -> None:
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["champion"] is None


def test_prefect_home_is_created_with_its_parents(tmp_path: Path) -> None:
    # Prefect itself creates only the last folder: the ephemeral server of a fresh clone's
    # first `perennial demo` then failed to open its database.
    home = tmp_path / "fresh" / "home" / "prefect"
    result = CliRunner().invoke(app, ["demo", "--help"], env={"PREFECT_HOME": str(home)})
    assert result.exit_code == 0, result.output
    assert home.is_dir()


def test_train_summary_of_an_identical_rerun_without_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rerun that finds a version registered by a concurrent run, whose decision numbers are
    not recorded yet, is reported (it crashed with a TypeError)."""
    from flows.cli import runner

    found = {
        "model": "flights-late-arrival",
        "version": "3",
        "existing": True,
        "promoted": False,
        "reasons": ["identical training already registered v3: nothing new registered"],
        "holdout": "2013-03",
        "challenger": None,
        "champion": None,
    }
    monkeypatch.setattr(runner, "run", lambda flow, **parameters: found)
    result = CliRunner().invoke(app, ["train", "--batches", "2013-01..2013-03"])
    assert result.exit_code == 0, result.output
    assert "v3 not promoted (holdout 2013-03: AUC not recorded)" in result.output
