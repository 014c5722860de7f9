"""Registered model names `<dataset>-<target>` are unambiguous: a dataset name has no '-', so
`a-b` + `c` (refused) can never collide with `a` + `b-c`; what a model produces is kept per
model."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core import catalog
from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tests.integration.test_second_dataset import CONFIG


def write(tmp_path: Path, dataset: str = "sensors", target: str = "overheat") -> Path:
    path = tmp_path / "sensors.yaml"
    path.write_text(
        CONFIG.replace("dataset: sensors", f"dataset: {dataset}").replace(
            "name: overheat", f"name: {target}"
        )
    )
    return path


def test_cli_refuses_a_dataset_name_that_could_collide_in_one_line(tmp_path: Path) -> None:
    colliding = write(tmp_path, dataset="a-b", target="c")  # would be model `a-b-c`, like a + b-c
    result = CliRunner().invoke(app, ["status", "--config", str(colliding)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(colliding) in lines[0] and "field 'dataset'" in lines[0]
    assert "no '-'" in lines[0]


def test_the_first_dash_separates_dataset_and_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write(tmp_path, dataset="a", target="b-c"))
    assert config.model_name == "a-b-c"
    assert config.model_name.split("-", 1) == [config.dataset, config.target.name]
    for dataset in ("a-b", "Sensors", "../x", "a b"):
        with pytest.raises(ConfigError, match="field 'dataset'"):
            load_config(write(tmp_path, dataset=dataset))
    with pytest.raises(ConfigError, match=r"field 'target\.name'"):
        load_config(write(tmp_path, target="Overheat"))
    monkeypatch.setenv("PERENNIAL_DATASET", "a-b")  # the environment cannot slip one in either
    with pytest.raises(ConfigError, match="field 'dataset'"):
        load_config(write(tmp_path))


def test_predictions_and_reference_profiles_are_kept_per_model(tmp_path: Path) -> None:
    hot = load_config(write(tmp_path, target="overheat"))
    cold = load_config(write(tmp_path, target="freeze"))
    for entry, parts in (("predictions", {"batch": "2024-W01"}), ("reference", {"version": "1"})):
        hot_key = catalog.key(entry, hot, **parts)  # type: ignore[arg-type]
        cold_key = catalog.key(entry, cold, **parts)  # type: ignore[arg-type]
        assert hot_key != cold_key
        assert "/sensors-overheat/" in hot_key and "/sensors-freeze/" in cold_key
    # raw and validated data belong to the dataset, shared by its models
    assert catalog.key("validated", hot, batch="2024-W01") == catalog.key(
        "validated", cold, batch="2024-W01"
    )
