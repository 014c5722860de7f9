"""Secret keys of a home: each read from an environment variable when it is set (served mode and
AWS put it in the environment of the processes that need it), else from a file of its own (0600)
in a local home, made at first use. An S3 home has no local place for a file: there the variable
is required. The model signing key (`tasks/registry/model_signing.py`) and the key that hashes
declared personal columns (`tasks/data/privacy.py`) are both kept this way, each its own secret.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from tasks.core.config_section import ConfigError

SHORTEST_KEY = 32  # characters


class SecretKeyError(ConfigError):
    """No usable key; the message says where Perennial looked and what to do."""


@dataclass(frozen=True)
class SecretKey:
    """Where one secret lives: its variable, its file in a local home, what it is for (in
    messages) and what a person must do if the file was exposed."""

    variable: str
    file_name: str
    purpose: str  # e.g. "models are signed"
    if_exposed: str  # e.g. "retrain: every model signed with it is suspect"


def home_key(secret: SecretKey, home: str, error: type[SecretKeyError] = SecretKeyError) -> bytes:
    """The key: from the environment, else from (or new in) the local home's key file."""
    given = os.environ.get(secret.variable)
    if given is not None:
        if len(given.strip()) < SHORTEST_KEY:
            raise error(
                f"{secret.variable} is shorter than {SHORTEST_KEY} characters: set it to a "
                "random secret, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return given.strip().encode()
    if home.startswith("s3://"):
        raise error(
            f"home {home} is in S3, so {secret.purpose} with {secret.variable}, which is not "
            "set: set it (the same secret for every process that needs it)"
        )
    return _key_file(Path(home) / secret.file_name, secret, error)


def _key_file(path: Path, secret: SecretKey, error: type[SecretKeyError]) -> bytes:
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
        raise error(
            f"{path} can be read by other users: `chmod 600 {path}` (and, if anyone else could "
            f"read it, delete it and {secret.if_exposed})"
        )
    key = path.read_text().strip()
    if len(key) < SHORTEST_KEY:
        raise error(f"{path} holds no usable key: delete it and {secret.if_exposed}")
    return key.encode()
