"""Signing a registered model: the sha256 of its files bound, by an HMAC, to a key the registry
does not hold, and to the version's name and number.

Anyone who can write the registry's tags can also rewrite `perennial.model_sha256` to match files
they swapped in; without the key they cannot write the HMAC that goes with it
(`perennial.model_hmac`), and an HMAC copied from another version does not match this one's name
and number. A version that lacks either tag was never fully registered (a crash between its
creation and its last tag): it is not loaded, and a rerun does not count it as done.

The key: `PERENNIAL_MODEL_SIGNING_KEY` when set (served mode and AWS put it in the environment
of the processes that train and serve), else a file `model-signing.key` (0600) in a local home,
made at first use. An S3 home has no local place for it: there the variable is required.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from tasks.core.config import PerennialConfig
from tasks.core.config_section import ConfigError

MODEL_SHA256_TAG = "perennial.model_sha256"
MODEL_HMAC_TAG = "perennial.model_hmac"
SIGNING_KEY_VARIABLE = "PERENNIAL_MODEL_SIGNING_KEY"
KEY_FILE = "model-signing.key"
SHORTEST_KEY = 32  # characters
MESSAGE_FORMAT = b"perennial-model/1"


class SigningKeyError(ConfigError):
    """No usable signing key; the message says where Perennial looked and what to do."""


def is_signed(tags: dict[str, str]) -> bool:
    """Whether a version carries both tags of a finished registration (not whether they hold:
    that takes the key and the files, `tasks.registry.model_store.load_model`)."""
    return MODEL_SHA256_TAG in tags and MODEL_HMAC_TAG in tags


def signing_key(config: PerennialConfig) -> bytes:
    """The key: from the environment, else from (or new in) the local home's key file."""
    given = os.environ.get(SIGNING_KEY_VARIABLE)
    if given is not None:
        if len(given.strip()) < SHORTEST_KEY:
            raise SigningKeyError(
                f"{SIGNING_KEY_VARIABLE} is shorter than {SHORTEST_KEY} characters: set it to a "
                "random secret, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return given.strip().encode()
    if config.home.startswith("s3://"):
        raise SigningKeyError(
            f"home {config.home} is in S3, so models are signed with {SIGNING_KEY_VARIABLE}, "
            "which is not set: set it (the same secret for every process that trains or scores)"
        )
    return _key_file(Path(config.home) / KEY_FILE)


def _key_file(path: Path) -> bytes:
    """The home's key, made at first use: written whole to a private file, then linked to its
    name (two first uses at once: one link wins, the other reads the winner's key)."""
    if not path.exists():
        from tasks.core.private_state import PRIVATE_FILE, private_folder

        private_folder(path.parent)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        raise SigningKeyError(
            f"{path} can be read by other users: `chmod 600 {path}` (and, if anyone else could "
            "read it, delete it and retrain: every model signed with it is suspect)"
        )
    key = path.read_text().strip()
    if len(key) < SHORTEST_KEY:
        raise SigningKeyError(f"{path} holds no usable key: delete it and retrain")
    return key.encode()


def model_hmac(key: bytes, name: str, version: str, digest: str) -> str:
    """HMAC-SHA256 of a version's digest, bound to its registered model and version number."""
    message = b"\n".join([MESSAGE_FORMAT, name.encode(), str(version).encode(), digest.encode()])
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def hmac_holds(key: bytes, name: str, version: str, digest: str, recorded: str) -> bool:
    return hmac.compare_digest(model_hmac(key, name, version, digest), recorded)
