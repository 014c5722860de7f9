"""Signing a registered model: the sha256 of its files bound, by an HMAC, to a key the registry
does not hold, and to the version's name and number.

Anyone who can write the registry's tags can also rewrite `perennial.model_sha256` to match files
they swapped in; without the key they cannot write the HMAC that goes with it
(`perennial.model_hmac`), and an HMAC copied from another version does not match this one's name
and number. A version that lacks either tag was never fully registered (a crash between its
creation and its last tag): it is not loaded, and a rerun does not count it as done.

The key: `PERENNIAL_MODEL_SIGNING_KEY` when set (served mode and AWS put it in the environment
of the processes that train and serve), else a file `model-signing.key` (0600) in a local home,
made at first use. An S3 home has no local place for it: there the variable is required. The
key is read as every secret of a home is (`tasks/core/secret_keys.py`).
"""

from __future__ import annotations

import hashlib
import hmac

from tasks.core.config import PerennialConfig
from tasks.core.secret_keys import SecretKey, SecretKeyError, home_key

MODEL_SHA256_TAG = "perennial.model_sha256"
MODEL_HMAC_TAG = "perennial.model_hmac"
SIGNING_KEY_VARIABLE = "PERENNIAL_MODEL_SIGNING_KEY"
KEY_FILE = "model-signing.key"
MESSAGE_FORMAT = b"perennial-model/1"


SIGNING_KEY = SecretKey(
    SIGNING_KEY_VARIABLE,
    KEY_FILE,
    "models are signed",
    "retrain: every model signed with it is suspect",
)


class SigningKeyError(SecretKeyError):
    """No usable signing key; the message says where Perennial looked and what to do."""


def is_signed(tags: dict[str, str]) -> bool:
    """Whether a version carries both tags of a finished registration (not whether they hold:
    that takes the key and the files, `tasks.registry.model_store.load_model`)."""
    return MODEL_SHA256_TAG in tags and MODEL_HMAC_TAG in tags


def signing_key(config: PerennialConfig) -> bytes:
    """The key: from the environment, else from (or new in) the local home's key file."""
    return home_key(SIGNING_KEY, config.home, SigningKeyError)


def model_hmac(key: bytes, name: str, version: str, digest: str) -> str:
    """HMAC-SHA256 of a version's digest, bound to its registered model and version number."""
    message = b"\n".join([MESSAGE_FORMAT, name.encode(), str(version).encode(), digest.encode()])
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def hmac_holds(key: bytes, name: str, version: str, digest: str, recorded: str) -> bool:
    return hmac.compare_digest(model_hmac(key, name, version, digest), recorded)
