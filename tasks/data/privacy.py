"""Declared personal columns (`privacy.columns` of the dataset YAML) kept out of every stored copy:
at landing, before any byte is kept, a `drop` column is removed and a `hash` column's values are
replaced by a keyed hash (HMAC-SHA256, `privacy_key`), so that rows still join on it and
`perennial forget --where` still finds a subject, by hashing the value it is given.

The landed file is therefore the arrived file rewritten: its sha256 (the landing record's
`sha256`, what the gate and lineage speak of) is the hash of the bytes kept; the record also keeps
`arrived_sha256`, the hash of the bytes as they arrived, so that the same delivery landed again
is recognised, and `privacy` (which columns were dropped or hashed). A CSV is read as text, every
value as written, and written back (compressed CSV lands as plain CSV); Parquet is written back as
Parquet. A file that holds no declared column lands as it arrived, byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import io
from dataclasses import dataclass, field

import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.core.secret_keys import SecretKey, home_key
from tasks.data.raw_files import IngestError

PRIVACY_KEY = SecretKey(
    "PERENNIAL_PRIVACY_KEY",
    "privacy-hash.key",
    "declared personal columns are hashed",
    "land the data again: a hash made with an exposed key can be tested against guesses",
)
MESSAGE_FORMAT = b"perennial-privacy/1\n"


@dataclass(frozen=True)
class KeptBytes:
    """What is landed of an arrived file: the bytes, their extension, and what was done."""

    data: bytes
    ext: str
    actions: dict[str, str] = field(default_factory=dict)  # column -> "drop" | "hash"


def privacy_key(config: PerennialConfig) -> bytes:
    """The key of the dataset's hashed columns (`PERENNIAL_PRIVACY_KEY`, or a 0600 file in a
    local home): every process that lands data or erases a subject must have the same one."""
    return home_key(PRIVACY_KEY, config.home)


def hash_value(key: bytes, value: object) -> str:
    """The stored form of one value of a hashed column: HMAC-SHA256 of its text, in hex."""
    return hmac.new(key, MESSAGE_FORMAT + str(value).encode(), hashlib.sha256).hexdigest()


def hash_values(key: bytes, values: pd.Series) -> pd.Series:
    """A column's values hashed; missing and empty values stay as they are (nothing to hide)."""
    present = values.notna() & (values.astype(str) != "")
    hashed = values.astype(object).copy()
    hashed[present] = [hash_value(key, v) for v in values[present]]
    return hashed


def without_personal_columns(
    config: PerennialConfig, data: bytes, name: str, ext: str
) -> KeptBytes:
    """The bytes to land for an arrived file: declared columns dropped or hashed. IngestError
    when a file that may hold them cannot be read (it must not be kept as it is)."""
    declared = config.privacy.columns
    if not declared:
        return KeptBytes(data, ext)
    try:
        frame = read_as_text(config, data, name, ext)
    except (ValueError, OSError) as exc:  # FileCheckError and the readers' errors
        raise IngestError(
            f"{name}: cannot remove the declared personal columns "
            f"({', '.join(config.privacy.declared())}) before landing, as the file cannot be "
            f"read ({str(exc)[:200]}); fix the file and land it again"
        ) from None
    actions: dict[str, str] = {c: a for c, a in sorted(declared.items()) if c in frame.columns}
    if not actions:
        return KeptBytes(data, ext)
    frame = frame.drop(columns=[c for c, a in actions.items() if a == "drop"])
    if hashed := [c for c, a in actions.items() if a == "hash"]:
        key = privacy_key(config)
        for column in hashed:
            frame[column] = hash_values(key, frame[column])
    return KeptBytes(*frame_bytes(frame, ext), actions)


def read_as_text(config: PerennialConfig, data: bytes, name: str, ext: str) -> pd.DataFrame:
    """A raw file's rows with every CSV value as the text written (Parquet as stored), so that
    writing them back changes nothing but what was removed. Raises what the readers raise
    (ValueError, OSError; FileCheckError for a file over the size limits)."""
    from tasks.data.filecheck import plain_bytes

    plain = plain_bytes(data, name, ext, config.validation)
    if ext == ".parquet":
        return pd.read_parquet(io.BytesIO(plain))
    return pd.read_csv(io.BytesIO(plain), dtype=str, keep_default_na=False)


def frame_bytes(frame: pd.DataFrame, ext: str) -> tuple[bytes, str]:
    """A frame read by `read_as_text` written back: Parquet as Parquet, anything else as CSV."""
    if ext == ".parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue(), ".parquet"
    return frame.to_csv(index=False).encode(), ".csv"
