from pathlib import Path

import pytest

from tasks.core.config import dataset_config, dataset_names, load_config
from tasks.core.config_section import ConfigError
from tests.conftest import FLIGHTS


def test_flights_config_loads_with_paths_relative_to_the_file() -> None:
    config = load_config(FLIGHTS)
    assert config.model_name == "flights-late-arrival"
    assert Path(config.validation.gx_root) == FLIGHTS.parent.parent / "great_expectations"
    assert config.features.columns[:2] == ["sched_dep_time", "sched_arr_time"]
    assert "dep_delay" not in config.features.columns


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERENNIAL_HOME", str(tmp_path))
    monkeypatch.setenv("PERENNIAL_HPO__TRIALS", "3")
    monkeypatch.setenv("PERENNIAL_MLFLOW_URI", "http://127.0.0.1:5000")
    config = load_config(FLIGHTS)
    assert config.home == str(tmp_path)
    assert config.hpo.trials == 3
    assert config.tracking_uri == "http://127.0.0.1:5000"


def test_default_back_ends_live_in_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PERENNIAL_HOME", str(tmp_path))
    config = load_config(FLIGHTS)
    assert config.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert config.optuna_storage_url == f"journal:{tmp_path}/optuna.journal"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(FLIGHTS.read_text() + text)
    return path


def test_bad_field_is_named_with_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "\nhpo:\n  trials: 0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert "hpo.trials" in str(caught.value)


def test_a_leaking_feature_is_refused(tmp_path: Path) -> None:
    text = FLIGHTS.read_text().replace(
        "categorical: [carrier,", "categorical: [dep_delay, carrier,"
    )
    path = tmp_path / "leak.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"features.*dep_delay.*forbidden"):
        load_config(path)


def test_unknown_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trails"):
        load_config(_write(tmp_path, "\ntrails: 3\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_fingerprint_ignores_where_state_lives(monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_config(FLIGHTS).fingerprint()
    monkeypatch.setenv("PERENNIAL_HOME", "/elsewhere")
    assert load_config(FLIGHTS).fingerprint() == first
    monkeypatch.setenv("PERENNIAL_HPO__SEED", "7")
    assert load_config(FLIGHTS).fingerprint() != first


def test_artifact_keys_keep_only_what_prefect_accepts() -> None:
    from tasks.core.artifacts import artifact_key

    assert artifact_key("drift-My_Data-2013.07") == "drift-my-data-2013-07"
    assert artifact_key("gate-flights-2013-07") == "gate-flights-2013-07"


@pytest.mark.parametrize(
    "hostile", ["../configs/flights", "/etc/passwd", "flights.yaml", "a/b", ""]
)
def test_flows_take_dataset_names_never_paths(
    hostile: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))
    (tmp_path / "flights.yaml").write_text(FLIGHTS.read_text())
    if hostile == "":  # empty means the demo dataset
        assert dataset_config(hostile).dataset == "flights"
        return
    with pytest.raises(ConfigError, match=r"not a path|no dataset"):
        dataset_config(hostile)


def test_a_dataset_name_resolves_in_the_configs_folder() -> None:
    assert dataset_config("flights").config_path == FLIGHTS.resolve()
    assert "flights" in dataset_names()
    with pytest.raises(ConfigError, match=r"no dataset .nope..*known are flights"):
        dataset_config("nope")


def test_a_file_is_parsed_once_per_content_and_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tasks.core import config as config_module

    parses: list[Path] = []
    parse = config_module._parse
    monkeypatch.setattr(
        config_module, "_parse", lambda path, text: parses.append(path) or parse(path, text)
    )
    path = tmp_path / "sensors.yaml"
    path.write_text(FLIGHTS.read_text())
    first = load_config(path)
    again = load_config(tmp_path / "." / "sensors.yaml")  # the same file, named otherwise
    assert len(parses) == 1
    assert again == first and again is not first  # each caller its own copy
    again.hpo.trials = 1
    assert load_config(path).hpo.trials == first.hpo.trials  # ... so a change stays its own
    path.write_text(FLIGHTS.read_text() + "\n")  # edited: parsed again, whatever its mtime
    load_config(path)
    assert len(parses) == 2
    monkeypatch.setenv("PERENNIAL_HPO__TRIALS", "3")  # an override: parsed again
    assert load_config(path).hpo.trials == 3
    assert len(parses) == 3


def test_a_run_may_name_the_folder_of_its_dataset(tmp_path: Path) -> None:
    (tmp_path / "flights.yaml").write_text(FLIGHTS.read_text())
    assert dataset_config("flights", str(tmp_path)).config_path == tmp_path / "flights.yaml"
    assert dataset_config("flights", "").config_path == FLIGHTS.resolve()
    with pytest.raises(ConfigError, match=r"configs_dir .*nope.* is not a folder"):
        dataset_config("flights", str(tmp_path / "nope"))


def test_a_served_run_reads_only_the_operators_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A deployment's parameters come from the UI: they may not point a worker at any YAML."""
    (tmp_path / "flights.yaml").write_text(FLIGHTS.read_text())
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__ID", "a-deployment")
    with pytest.raises(ConfigError, match="served run reads its dataset from the operator's"):
        dataset_config("flights", str(tmp_path))
    assert dataset_config("flights", str(FLIGHTS.parent)).dataset == "flights"
    monkeypatch.setenv("PERENNIAL_CONFIGS_DIR", str(tmp_path))  # the operator's choice
    assert dataset_config("flights", str(tmp_path)).config_path == tmp_path / "flights.yaml"
