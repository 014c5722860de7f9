"""The S3 client that `S3Storage` talks through, and the puts it makes: every put carries the
server-side encryption headers and the object's sha256 in its metadata, and a conditional put
(`If-None-Match: *`) stays conditional when the object goes up in parts.

The client is built once per endpoint and retry setting; credentials, region and endpoint come
from the standard AWS variables (`AWS_ENDPOINT_URL_S3`, ...), which boto3 reads itself, so the
same code runs against AWS and a moto server."""

from __future__ import annotations

import contextlib
import io
import os
import threading
from typing import Any

# S3 tuning. Objects from MULTIPART_BYTES up go up in parts of that size (S3 minimum: 5 MiB).
MULTIPART_BYTES = 8 * 1024 * 1024
# Attempts per S3 call (botocore "standard" retries: 5xx, throttling and connection errors, with
# exponential backoff and jitter). Override with PERENNIAL_S3_MAX_ATTEMPTS.
DEFAULT_MAX_ATTEMPTS = 6
# What S3 answers a conditional put whose key another writer holds (or is writing).
KEY_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")


def error_code(exc: Any) -> str | None:
    """The S3 error code of a botocore ClientError (`NoSuchKey`, `AccessDenied`, ...)."""
    code = exc.response.get("Error", {}).get("Code")
    return None if code is None else str(code)


def head_object(bucket: str, name: str) -> dict[str, Any] | None:
    """The object's HEAD reply, or None when there is no such object."""
    from botocore.exceptions import ClientError

    try:
        return dict(s3_client().head_object(Bucket=bucket, Key=name))
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def put_object(bucket: str, name: str, data: bytes, digest: str, *, conditional: bool) -> None:
    """One atomic put of `data` (sha256 `digest`); `conditional`: only if the key is free
    (botocore's ClientError with a code in KEY_TAKEN otherwise)."""
    client = s3_client()
    extra: dict[str, Any] = {**encryption_args(), "Metadata": {"sha256": digest}}
    if len(data) < MULTIPART_BYTES:
        if conditional:
            extra["IfNoneMatch"] = "*"
        client.put_object(Bucket=bucket, Key=name, Body=data, **extra)
    elif conditional:
        _conditional_multipart_put(bucket, name, data, extra)
    else:
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(
            multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES
        )
        client.upload_fileobj(io.BytesIO(data), bucket, name, extra, Config=transfer)


def _conditional_multipart_put(bucket: str, name: str, data: bytes, extra: dict[str, Any]) -> None:
    """Multipart upload completed with `If-None-Match: *`: boto3's managed transfer cannot
    pass that condition (s3transfer's allowed upload arguments leave it out)."""
    client = s3_client()
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=name, **extra)["UploadId"]
    try:
        parts = []
        for number, start in enumerate(range(0, len(data), MULTIPART_BYTES), start=1):
            reply = client.upload_part(
                Bucket=bucket,
                Key=name,
                UploadId=upload_id,
                PartNumber=number,
                Body=data[start : start + MULTIPART_BYTES],
            )
            parts.append({"ETag": reply["ETag"], "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=name,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfNoneMatch="*",
        )
    except BaseException:
        # Parts of an unfinished upload are billed until aborted (the bucket's lifecycle
        # rule also aborts them after 7 days).
        with contextlib.suppress(Exception):  # the original error is the one to report
            client.abort_multipart_upload(Bucket=bucket, Key=name, UploadId=upload_id)
        raise


def encryption_args() -> dict[str, str]:
    """Server-side encryption of every put: SSE-KMS with `PERENNIAL_S3_KMS_KEY_ID` when set (the
    Terraform data bucket refuses anything else), AES256 otherwise."""
    key_id = os.environ.get("PERENNIAL_S3_KMS_KEY_ID")
    if key_id:
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id}
    return {"ServerSideEncryption": "AES256"}


# A client is built once per value of these (tests and tools switch endpoints in one process).
_CLIENT_VARIABLES = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
)
_client_lock = threading.Lock()
_clients: dict[tuple[str | None, ...], Any] = {}


def s3_client() -> Any:
    """One S3 client per endpoint and retry setting (clients are thread-safe; creating one costs
    tens of milliseconds)."""
    import boto3
    from botocore.config import Config

    attempts = os.environ.get("PERENNIAL_S3_MAX_ATTEMPTS", str(DEFAULT_MAX_ATTEMPTS))
    identity = (attempts, *(os.environ.get(name) for name in _CLIENT_VARIABLES))
    with _client_lock:
        if identity not in _clients:
            config = Config(retries={"mode": "standard", "max_attempts": int(attempts)})
            _clients[identity] = boto3.session.Session().client("s3", config=config)
        return _clients[identity]
