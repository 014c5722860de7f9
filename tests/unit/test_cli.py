import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import FLIGHTS, ROOT

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
    from tasks.registry.promotion import RerunSummary

    found = RerunSummary(
        model="flights-late-arrival",
        version="3",
        existing=True,
        promoted=False,
        reasons=["identical training already registered v3: nothing new registered"],
        champion_version="2",
        holdout="2013-03",
        trained_on=[],
        challenger=None,
        champion=None,
    )
    monkeypatch.setattr(runner, "run", lambda flow, **parameters: found)
    result = CliRunner().invoke(app, ["train", "--batches", "2013-01..2013-03"])
    assert result.exit_code == 0, result.output
    assert "v3 not promoted (holdout 2013-03: AUC not recorded)" in result.output


def test_a_config_elsewhere_reaches_the_flow_as_a_name_and_a_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`--config DIR/x.yaml`: the flow finds the same file from its parameters, reuses the
    CLI's parse, and nothing is left in the process's environment."""
    from flows.cli import runner
    from tasks.core import config as config_module
    from tasks.core.config import dataset_config
    from tasks.registry.promotion import RollbackSummary

    path = tmp_path / "elsewhere" / "flights.yaml"
    path.parent.mkdir()
    path.write_text(FLIGHTS.read_text().replace("trials: ", "trials: 1 #"))
    monkeypatch.delenv("PERENNIAL_CONFIGS_DIR", raising=False)
    parses: list[Path] = []
    parse = config_module._parse
    monkeypatch.setattr(
        config_module, "_parse", lambda where, text: parses.append(where) or parse(where, text)
    )
    calls: list[dict[str, Any]] = []
    found = RollbackSummary(model="flights-late-arrival", champion="1", demoted="2")
    monkeypatch.setattr(runner, "run", lambda flow, **parameters: calls.append(parameters) or found)
    result = CliRunner().invoke(app, ["rollback", "--config", str(path)])
    assert result.exit_code == 0, result.output
    assert calls[0] == {"dataset": "flights", "configs_dir": str(path.parent)}  # no reason given
    assert "PERENNIAL_CONFIGS_DIR" not in os.environ
    flow_config = dataset_config(calls[0]["dataset"], calls[0]["configs_dir"])
    assert flow_config.config_path == path and flow_config.hpo.trials == 1
    assert parses == [path]  # the CLI parsed it; the flow's lookup reused that


@pytest.mark.parametrize(
    ("command", "flow", "parameter"),
    [
        ("demo", "flows.demo:demo", "first"),
        ("demo", "flows.demo:demo", "last"),
        ("replay", "flows.replay:replay", "seeds"),
        ("rollback", "flows.promotion:rollback_champion", "reason"),
    ],
)
def test_an_option_left_out_takes_the_flows_default_which_the_help_states(
    command: str, flow: str, parameter: str
) -> None:
    """The flow's signature is the one home of the default: the CLI passes only what was given."""
    import importlib
    import inspect

    module, name = flow.split(":")
    default = (
        inspect.signature(getattr(importlib.import_module(module), name).fn)
        .parameters[parameter]
        .default
    )
    shown = " ".join(CliRunner().invoke(app, [command, "--help"]).output.split())
    assert f"default: {default})" in shown
