"""The `training:` section of a dataset YAML: where the final model trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tests.conftest import FLIGHTS


def _with(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "flights.yaml"
    path.write_text(FLIGHTS.read_text().replace("home: ../.perennial", f"home: {tmp_path}") + text)
    return path


def test_local_by_default_and_dask_from_the_yaml(tmp_path: Path) -> None:
    assert load_config(FLIGHTS).training.engine == "local"

    scheduler = "tcp://dask-scheduler.internal:8786"  # parsed only: nothing connects here
    section = f"\ntraining: {{engine: dask, dask_scheduler: '{scheduler}', dask_workers: 4}}\n"
    config = load_config(_with(tmp_path, section))

    assert config.training.engine == "dask"
    assert config.training.dask_scheduler == scheduler
    assert config.training.dask_workers == 4
    # Where a model trains does not change what it is: the same fingerprint, the same run key.
    assert config.fingerprint() == load_config(_with(tmp_path, "")).fingerprint()


def test_the_environment_chooses_the_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERENNIAL_TRAINING__ENGINE", "dask")
    monkeypatch.setenv("PERENNIAL_TRAINING__DASK_WORKERS", "3")
    config = load_config(_with(tmp_path, ""))
    assert (config.training.engine, config.training.dask_workers) == ("dask", 3)


@pytest.mark.parametrize(
    ("text", "field"),
    [("{engine: spark}", "training.engine"), ("{dask_workers: 0}", "training.dask_workers")],
)
def test_a_bad_training_section_names_its_field(tmp_path: Path, text: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_config(_with(tmp_path, f"\ntraining: {text}\n"))
