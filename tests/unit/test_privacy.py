"""`privacy.columns`: declared columns never become features, `drop` is gone before the bytes are
kept, `hash` is a keyed HMAC (same value, same hash: joins hold) with its key in the secret store
(the environment, or a 0600 file in the home, as the model signing key)."""

from __future__ import annotations

import hashlib
import hmac
import io
import stat
from pathlib import Path

import pandas as pd
import pytest

from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tasks.core.secret_keys import SecretKeyError
from tasks.core.storage import Storage
from tasks.data.ingest import land_batch, landed_record
from tasks.data.privacy import PRIVACY_KEY, hash_value, privacy_key
from tasks.watch.live import live_frame
from tests.conftest import FLIGHTS, ROOT
from tests.erasure_scenario import SUBJECT, arrived, people_config


def write_config(tmp_path: Path, privacy: str, features: str | None = None) -> Path:
    text = FLIGHTS.read_text().replace(
        "gx_root: ../great_expectations", f"gx_root: {ROOT}/great_expectations"
    )
    if features:
        text = text.replace("categorical: [carrier, origin, dest]", features)
    path = tmp_path / "flights.yaml"
    path.write_text(text + f"\nprivacy:\n  columns: {privacy}\n")
    return path


def test_the_section_loads(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, "{email: drop, customer_id: hash}"))
    assert config.privacy.declared("hash") == ["customer_id"]
    assert config.privacy.declared() == ["customer_id", "email"]


@pytest.mark.parametrize(
    ("privacy", "features", "named"),
    [
        ("{tailnum: hash, carrier: drop}", None, r"\['carrier'\] is also a feature"),
        ("{arr_delay: hash}", None, r"\['arr_delay'\] is also the target column"),
        ("{time_hour: drop}", None, r"\['time_hour'\] is also the time column"),
        ("{flight: drop}", None, r"\['flight'\] is also a key column"),
        ("{email: encrypt}", None, "privacy.columns.email"),
        (
            "{dest: drop}\nfairness: {sensitive: [dest]}",
            "categorical: [carrier, origin]",
            r"\['dest'\] is also a fairness.sensitive column",
        ),
    ],
)
def test_a_declared_column_is_never_used(
    tmp_path: Path, privacy: str, features: str | None, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(write_config(tmp_path, privacy, features))


def test_drop_and_hash_happen_before_the_bytes_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PRIVACY_KEY.variable, raising=False)
    home = tmp_path / "home"
    storage, config = Storage(home), people_config(str(home))
    data = arrived("2013-01", 1)
    record = land_batch(storage, config, "2013-01", data, ".csv", "test")
    kept = storage.read_bytes(record.key)
    landed = pd.read_csv(io.BytesIO(kept), dtype=str)
    assert list(landed.columns) == ["time_hour", "customer_id", "amount"]  # e-mail dropped
    key = (home / "privacy-hash.key").read_text().strip().encode()
    expected = hmac.new(key, b"perennial-privacy/1\n" + SUBJECT.encode(), hashlib.sha256)
    assert (landed["customer_id"] == expected.hexdigest()).sum() == 3  # joins still hold
    assert b"@example.org" not in kept and SUBJECT.encode() not in kept
    # Every other value as it arrived, text for text.
    original = pd.read_csv(io.BytesIO(data), dtype=str)
    assert landed["amount"].tolist() == original["amount"].tolist()
    # The record: the kept bytes' hash (what everything else speaks of), and the arrived one's.
    assert record.sha256 == hashlib.sha256(kept).hexdigest()
    assert record.arrived_sha256 == hashlib.sha256(data).hexdigest()
    assert record.privacy == {"customer_id": "hash", "email": "drop"}
    stored = landed_record(storage, config, "2013-01")
    assert stored is not None and stored.arrived_sha256 == record.arrived_sha256
    # The same delivery again: nothing new lands.
    again = land_batch(storage, config, "2013-01", data, ".csv", "test")
    assert (again.status, again.key) == ("unchanged", record.key)
    assert stat.S_IMODE((home / "privacy-hash.key").stat().st_mode) == 0o600


def test_a_file_without_declared_columns_lands_byte_for_byte(tmp_path: Path) -> None:
    storage, config = Storage(tmp_path), people_config(str(tmp_path))
    data = b"time_hour,amount\n2013-01-01T00:00:00Z,1.50\n"
    record = land_batch(storage, config, "2013-01", data, ".csv", "test")
    assert storage.read_bytes(record.key) == data and record.privacy == {}
    assert "privacy" not in storage.read_json("landing/flights/2013-01.landed.json")


def test_the_key_comes_from_the_environment_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = people_config(str(tmp_path))
    monkeypatch.setenv(PRIVACY_KEY.variable, "k" * 40)
    assert privacy_key(config) == b"k" * 40
    assert not (tmp_path / PRIVACY_KEY.file_name).exists()
    monkeypatch.setenv(PRIVACY_KEY.variable, "short")
    with pytest.raises(SecretKeyError, match="PERENNIAL_PRIVACY_KEY is shorter than 32"):
        privacy_key(config)
    monkeypatch.delenv(PRIVACY_KEY.variable)
    config.home = "s3://bucket/prefix"
    with pytest.raises(SecretKeyError, match="is in S3, so declared personal columns are hashed"):
        privacy_key(config)


def test_live_samples_keep_a_hashed_key_hashed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client sends the customer id itself; the live sample stores its hash, as landed."""
    monkeypatch.delenv(PRIVACY_KEY.variable, raising=False)
    config = people_config(str(tmp_path))
    config.validation.key_columns = ["customer_id", "email"]
    records = [
        {"customer_id": SUBJECT, "email": "x@example.org", "received_at": "2013-01-01T00:00:00Z"}
    ]
    frame = live_frame(records, config)
    assert list(frame.columns) == ["customer_id", "received_at"]
    assert frame["customer_id"].tolist() == [hash_value(privacy_key(config), SUBJECT)]
