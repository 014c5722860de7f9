from pathlib import Path

import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tasks.core.storage import ImmutableKeyError, S3Storage, Storage, open_storage
from tests.conftest import FLIGHTS


def test_immutable_write_is_idempotent_and_refuses_changes(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.write_bytes("landing/d/b.csv", b"a,b\n1,2\n", immutable=True)
    storage.write_bytes("landing/d/b.csv", b"a,b\n1,2\n", immutable=True)  # same bytes: no-op
    with pytest.raises(ImmutableKeyError, match=r"landing/d/b\.csv"):
        storage.write_bytes("landing/d/b.csv", b"a,b\n9,9\n", immutable=True)
    assert storage.read_bytes("landing/d/b.csv") == b"a,b\n1,2\n"
    assert oct(storage.path("landing/d/b.csv").stat().st_mode)[-3:] == "400"  # read-only, private


def test_raw_data_cannot_be_deleted(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.write_bytes("landing/d/b.csv", b"x", immutable=True)
    with pytest.raises(ValueError, match="raw data"):
        storage.delete("landing/d/b.csv")


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        Storage(tmp_path / "home").path("../secrets")


def test_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    storage = Storage(tmp_path)

    with pytest.raises(TypeError):
        storage.write_bytes("validated/d/b.parquet", object())  # type: ignore[arg-type]
    assert list((tmp_path / "validated" / "d").iterdir()) == []


def test_json_parquet_and_listing(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    storage.write_json("validated/d/a.json", {"rows": 2})
    storage.write_parquet("validated/d/a.parquet", pd.DataFrame({"x": [1, 2]}))
    assert storage.read_json("validated/d/a.json") == {"rows": 2}
    assert storage.read_parquet("validated/d/a.parquet")["x"].tolist() == [1, 2]
    assert storage.list("validated/d") == ["validated/d/a.json", "validated/d/a.parquet"]
    assert storage.list("nothing/here") == []


def test_s3_roots_open_an_s3_storage_and_keys_stay_inside() -> None:
    storage = open_storage("s3://bucket/some/prefix/")
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix) == ("bucket", "some/prefix")
    assert storage._object_key("landing/d/b.csv") == "some/prefix/landing/d/b.csv"
    assert S3Storage("s3://bucket")._object_key("landing/d/b.csv") == "landing/d/b.csv"
    for escaping in ("../secrets", "landing/../../x", "/etc/passwd", "landing//b.csv"):
        with pytest.raises(ValueError, match="outside"):
            storage._object_key(escaping)
    with pytest.raises(ValueError, match="not on a local disk"):
        storage.path("landing/d/b.csv")
    with pytest.raises(ValueError, match="raw data"):
        storage.delete("landing/d/b.csv")  # refused before any call to S3


def test_s3_urls_are_not_local_folders() -> None:
    with pytest.raises(ValueError, match="open_storage"):
        Storage("s3://bucket/prefix")
    with pytest.raises(ValueError, match="not an s3://"):
        S3Storage("s3://")


def test_an_s3_home_must_name_its_mlflow_and_optuna_back_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERENNIAL_HOME", "s3://bucket/perennial")
    monkeypatch.delenv("PERENNIAL_MLFLOW_URI", raising=False)
    monkeypatch.delenv("PERENNIAL_OPTUNA_STORAGE", raising=False)
    with pytest.raises(ConfigError, match=r"PERENNIAL_MLFLOW_URI.*PERENNIAL_OPTUNA_STORAGE"):
        load_config(FLIGHTS)
    monkeypatch.setenv("PERENNIAL_MLFLOW_URI", "http://127.0.0.1:5000")
    with pytest.raises(ConfigError, match="PERENNIAL_OPTUNA_STORAGE") as refused:
        load_config(FLIGHTS)
    assert "PERENNIAL_MLFLOW_URI" not in str(refused.value)
    monkeypatch.setenv("PERENNIAL_OPTUNA_STORAGE", "postgresql+psycopg://u@db:5432/optuna")
    config = load_config(FLIGHTS)
    assert config.tracking_uri == "http://127.0.0.1:5000"
    assert config.optuna_storage_url == "postgresql+psycopg://u@db:5432/optuna"
