"""The one storage layer: every read and write of pipeline state goes through `Storage`.

Keys are slash-separated paths under one root (`landing/flights/2013-01.csv`, ...), spelled only
in `tasks/core/catalog.py`. The root is a local folder (`Storage`) or an `s3://bucket/prefix`
(`S3Storage`, same interface); `open_storage` picks one from a config's `home`. Writes are
atomic (a temporary file renamed into place; a single S3 put or a completed multipart upload),
so an interrupted run never leaves a partial object behind; immutable keys (raw landed data) can
be written once only. The S3 client and its puts are `tasks/core/s3_client.py`; the modes of
local state, `tasks/core/private_state.py`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.core.catalog import LANDING
from tasks.core.private_state import private_folder
from tasks.core.s3_client import KEY_TAKEN, error_code, head_object, put_object, s3_client

# Raw landed data is read-only on disk too.
READ_ONLY_FILE = 0o400


class ImmutableKeyError(FileExistsError):
    """An immutable key (raw data) already holds different content."""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Storage:
    """State under a local root folder (`PERENNIAL_HOME`)."""

    def __init__(self, root: Path | str) -> None:
        if str(root).startswith("s3://"):
            raise ValueError(f"{root} is an S3 root: use open_storage({str(root)!r})")
        self.root = Path(root).resolve()

    def __repr__(self) -> str:
        return f"Storage({str(self.root)!r})"

    def location(self, key: str) -> str:
        """Where a person can open the stored file: a file:// URL (an s3:// URL on S3)."""
        return self.path(key).as_uri()

    def path(self, key: str) -> Path:
        """Local path of a key; refuses keys that would escape the root."""
        target = (self.root / key).resolve()
        if self.root not in target.parents:
            raise ValueError(f"storage key {key!r} points outside {self.root}")
        return target

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Keys of the files directly under a folder-like prefix, sorted."""
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        return sorted(f"{prefix.rstrip('/')}/{p.name}" for p in folder.iterdir() if p.is_file())

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"no {key} under {self.root}") from None

    def write_bytes(self, key: str, data: bytes, *, immutable: bool = False) -> None:
        """Write atomically. With `immutable`, the key may be written once (same bytes: no-op),
        enforced by the file system (see `_link_new`): checking, then renaming, let a
        second writer silently replace the first."""
        target = self.path(key)
        if immutable:
            if not self._link_new(key, data, read_only=True):  # written before, or by a racer
                self._local_same_or_refuse(key, target, data)
            return
        tmp = self._complete_temporary(target, data)
        try:
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _local_same_or_refuse(self, key: str, target: Path, data: bytes) -> None:
        """A write-once key already written: a no-op with the same bytes, refused otherwise."""
        if content_hash(target.read_bytes()) != content_hash(data):
            raise ImmutableKeyError(f"{key} already exists with different content")

    @staticmethod
    def _complete_temporary(target: Path, data: bytes) -> str:
        """`data` in a synced temporary file beside `target` (so a link or rename is atomic)."""
        private_folder(target.parent)
        # mkstemp creates the file 0600, and the rename keeps it.
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:  # nothing partial is left behind
            Path(tmp).unlink(missing_ok=True)
            raise
        return tmp

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Create `key` only if it does not exist: True if this call created it, False if it
        was there; of two writers racing exactly one wins (the claim behind de-duplicated
        alerts)."""
        return self._link_new(key, data)

    def _link_new(self, key: str, data: bytes, *, read_only: bool = False) -> bool:
        """Atomic across processes: the complete temporary file is hard-linked to the key, which
        fails on an existing name."""
        target = self.path(key)
        tmp = self._complete_temporary(target, data)
        try:
            if read_only:
                os.chmod(tmp, READ_ONLY_FILE)  # raw data is read-only on disk too
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)
        return True

    def delete(self, key: str) -> None:
        """Remove a derived file (never used on raw landed data)."""
        if key.startswith(LANDING):
            raise ValueError(f"refusing to delete raw data {key}")
        self.path(key).unlink(missing_ok=True)

    # -- erasure: the one exception to write-once ----------------------------------------------
    # Raw landed data is never overwritten or deleted, so that every model can be traced to the
    # bytes it learned from. A person's right to erasure (GDPR art. 17, CCPA) outranks that
    # trace: `perennial forget` (tasks/data/erasure.py) is the only caller of the two methods
    # below, and it first writes the rows it keeps as a new revision and records the erasure in
    # the audit log (who, when, why, which files; no values). Nothing else may call them.

    def erase(self, key: str) -> None:
        """Destroy a file's bytes, raw landed data included (for `perennial forget` only). On
        a local disk the file is unlinked: its blocks are the file system's to reuse."""
        self.path(key).unlink(missing_ok=True)

    def rewrite_erased(self, key: str, data: bytes) -> None:
        """Replace a derived file by its erased content (for `perennial forget` only), leaving
        no earlier content behind (on S3: no earlier object version)."""
        self.write_bytes(key, data)

    def read_json(self, key: str) -> Any:
        return json.loads(self.read_bytes(key))

    def write_json(self, key: str, value: Any, *, immutable: bool = False) -> None:
        blob = json.dumps(value, indent=2, sort_keys=True, default=str).encode()
        self.write_bytes(key, blob, immutable=immutable)

    def read_parquet(self, key: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(key)))

    def write_parquet(self, key: str, frame: pd.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        self.write_bytes(key, buffer.getvalue())


class S3Storage(Storage):
    """State under `s3://bucket/prefix`, with the interface of `Storage` (keys, not paths).

    Every put is encrypted server-side (`s3_client.encryption_args`), and each object records
    its sha256 in its metadata, which lets an immutable write recognise "same bytes already
    there" from a HEAD.
    """

    def __init__(self, url: str) -> None:
        if not url.startswith("s3://") or not url.removeprefix("s3://").strip("/"):
            raise ValueError(f"{url!r} is not an s3://bucket[/prefix] URL")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r})"

    def location(self, key: str) -> str:
        return f"{self.url}/{key}"

    def path(self, key: str) -> Path:
        raise ValueError(
            f"{key} lives in {self.url}, not on a local disk: use read_bytes/write_bytes"
        )

    def _object_key(self, key: str) -> str:
        parts = key.strip("/").split("/")
        if key.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise ValueError(f"storage key {key!r} points outside {self.url}")
        return "/".join([self.prefix, *parts]) if self.prefix else "/".join(parts)

    def exists(self, key: str) -> bool:
        return head_object(self.bucket, self._object_key(key)) is not None

    def list(self, prefix: str) -> list[str]:
        """Keys of the objects directly under a folder-like prefix, sorted."""
        folder = self._object_key(prefix) + "/"
        pages = (
            s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/")
        )
        names = [item["Key"][len(folder) :] for page in pages for item in page.get("Contents", [])]
        return sorted(f"{prefix.rstrip('/')}/{name}" for name in names if name)

    def read_bytes(self, key: str) -> bytes:
        client = s3_client()
        try:
            reply = client.get_object(Bucket=self.bucket, Key=self._object_key(key))
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"no {key} under {self.url}") from None
        return bytes(reply["Body"].read())

    def write_bytes(self, key: str, data: bytes, *, immutable: bool = False) -> None:
        """One atomic put. With `immutable`, the key may be written once (same bytes: no-op),
        enforced by S3 itself with a conditional put (`If-None-Match: *`), so two writers racing
        cannot both win, and a retried put whose first reply was lost is recognised as ours."""
        from botocore.exceptions import ClientError

        name, digest = self._object_key(key), content_hash(data)
        if immutable:
            stored = self._stored_hash(name)
            if stored is not None:
                self._same_or_refuse(key, stored, digest)
                return
        try:
            put_object(self.bucket, name, data, digest, conditional=immutable)
        except ClientError as exc:
            code = error_code(exc)
            if code == "AccessDenied" and "PERENNIAL_S3_KMS_KEY_ID" not in os.environ:
                raise PermissionError(
                    f"S3 refused to write {key} to {self.url} (AccessDenied): a bucket that "
                    "requires SSE-KMS refuses AES256 uploads; set PERENNIAL_S3_KMS_KEY_ID to its "
                    "KMS key ARN, or check the role's s3:PutObject permission on this prefix"
                ) from exc
            if not immutable or code not in KEY_TAKEN:
                raise
            stored = self._stored_hash(name)
            if stored is None:  # a concurrent writer gave up: nothing was written, say so
                raise
            self._same_or_refuse(key, stored, digest)

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Create `key` only if it does not exist, by a conditional put (`If-None-Match: *`):
        S3 lets exactly one of two racing writers win."""
        from botocore.exceptions import ClientError

        try:
            put_object(
                self.bucket, self._object_key(key), data, content_hash(data), conditional=True
            )
        except ClientError as exc:
            if error_code(exc) in KEY_TAKEN:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Remove a derived object (never raw landed data; the IAM role forbids it too)."""
        if key.startswith(LANDING):
            raise ValueError(f"refusing to delete raw data {key}")
        s3_client().delete_object(Bucket=self.bucket, Key=self._object_key(key))

    def erase(self, key: str) -> None:
        """Destroy every version of an object (and its delete markers): on a versioned bucket a
        plain delete only hides the bytes behind a marker. Needs s3:DeleteObjectVersion."""
        self._delete_versions(self._object_key(key), keep_latest=False)

    def rewrite_erased(self, key: str, data: bytes) -> None:
        """Write the erased content, then destroy every earlier version of the object."""
        self.write_bytes(key, data)
        self._delete_versions(self._object_key(key), keep_latest=True)

    def _delete_versions(self, name: str, *, keep_latest: bool) -> None:
        client = s3_client()
        pages = client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=name
        )
        doomed = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for page in pages
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            if item["Key"] == name and not (keep_latest and item.get("IsLatest"))
        ]
        for start in range(0, len(doomed), 1000):  # a batch delete takes at most 1000 keys
            client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": doomed[start : start + 1000], "Quiet": True}
            )

    def _stored_hash(self, name: str) -> str | None:
        head = head_object(self.bucket, name)
        if head is None:
            return None
        recorded = head.get("Metadata", {}).get("sha256")
        if recorded:
            return str(recorded)
        # Written by something else than Perennial: hash the content itself.
        body = s3_client().get_object(Bucket=self.bucket, Key=name)["Body"].read()
        return content_hash(body)

    def _same_or_refuse(self, key: str, stored: str, digest: str) -> None:
        if stored != digest:
            raise ImmutableKeyError(f"{key} already exists in {self.url} with different content")


def open_storage(home: Path | str) -> Storage:
    """The storage for a config's `home`: a local folder, or `s3://bucket/prefix`."""
    if str(home).startswith("s3://"):
        return S3Storage(str(home))
    return Storage(home)
