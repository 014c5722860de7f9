"""The model signing key and the HMAC it makes: from PERENNIAL_MODEL_SIGNING_KEY when set, else a
private key file made once in a local home; refused, in one line, when it is short, readable by
others, or missing with an S3 home; and an HMAC bound to the digest, the model and the version."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.registry.model_signing import (
    KEY_FILE,
    MODEL_HMAC_TAG,
    MODEL_SHA256_TAG,
    SIGNING_KEY_VARIABLE,
    SigningKeyError,
    hmac_holds,
    is_signed,
    model_hmac,
    signing_key,
)
from tests.conftest import FLIGHTS

DIGEST = "ab" * 32


def config_in(home: str) -> PerennialConfig:
    return load_config(FLIGHTS).model_copy(update={"home": home})


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIGNING_KEY_VARIABLE, raising=False)


def test_a_local_home_makes_its_key_once_for_the_user_only(tmp_path: Path) -> None:
    config = config_in(str(tmp_path / "home"))
    first = signing_key(config)
    path = tmp_path / "home" / KEY_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "home").stat().st_mode & 0o777 == 0o700
    assert len(first) >= 32 and signing_key(config) == first
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]  # no draft left beside it


def test_first_uses_at_once_agree_on_one_key(tmp_path: Path) -> None:
    config = config_in(str(tmp_path))
    start = threading.Barrier(8)
    keys: list[bytes] = []

    def first_use() -> None:
        start.wait()
        keys.append(signing_key(config))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]


def test_a_first_use_that_lost_the_race_keeps_the_winners_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_in(str(tmp_path))
    winner = signing_key(config)
    # A process that looked before the winner's key was there makes its own, then finds one.
    monkeypatch.setattr(Path, "exists", lambda self: False)
    assert signing_key(config) == winner
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [KEY_FILE]


def test_the_environment_key_wins_and_a_short_one_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_in(str(tmp_path))
    monkeypatch.setenv(SIGNING_KEY_VARIABLE, "k" * 40)
    assert signing_key(config) == b"k" * 40
    assert not (tmp_path / KEY_FILE).exists()  # no file made when the environment has the key
    monkeypatch.setenv(SIGNING_KEY_VARIABLE, "short")
    with pytest.raises(SigningKeyError, match=f"{SIGNING_KEY_VARIABLE} is shorter than 32"):
        signing_key(config)


def test_an_s3_home_without_the_variable_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = config_in("s3://bucket/perennial")
    with pytest.raises(SigningKeyError) as refused:
        signing_key(config)
    message = str(refused.value)
    assert "\n" not in message and SIGNING_KEY_VARIABLE in message and "s3://bucket" in message
    monkeypatch.setenv(SIGNING_KEY_VARIABLE, "s" * 32)
    assert signing_key(config) == b"s" * 32


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    config = config_in(str(tmp_path))
    signing_key(config)
    (tmp_path / KEY_FILE).chmod(0o644)
    with pytest.raises(SigningKeyError, match="can be read by other users: `chmod 600"):
        signing_key(config)


def test_the_hmac_binds_the_digest_to_the_model_and_its_version() -> None:
    key = b"x" * 32
    signed = model_hmac(key, "flights-late-arrival", "3", DIGEST)
    assert hmac_holds(key, "flights-late-arrival", "3", DIGEST, signed)
    assert not hmac_holds(key, "flights-late-arrival", "4", DIGEST, signed)  # copied onto v4
    assert not hmac_holds(key, "other-model", "3", DIGEST, signed)
    assert not hmac_holds(key, "flights-late-arrival", "3", "cd" * 32, signed)  # new files
    assert not hmac_holds(b"y" * 32, "flights-late-arrival", "3", DIGEST, signed)  # other key


def test_a_version_is_signed_only_with_both_tags() -> None:
    assert is_signed({MODEL_SHA256_TAG: DIGEST, MODEL_HMAC_TAG: "h"})
    assert not is_signed({MODEL_SHA256_TAG: DIGEST})
    assert not is_signed({MODEL_HMAC_TAG: "h", "perennial.training_key": "k"})
