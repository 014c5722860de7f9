"""S3 state root against a real `moto_server` over HTTP (only AWS itself is simulated): the
storage interface, encryption headers, multipart uploads, transient 5xx answers retried without
losing or duplicating data (through a small failing proxy in front of moto), and the training
flow end to end with landing/validated data and MLflow artifacts in the bucket."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.core.s3_client import MULTIPART_BYTES
from tasks.core.storage import ImmutableKeyError, S3Storage, open_storage
from tests.conftest import stop_process

pytestmark = [pytest.mark.integration]

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answers(port: int, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)  # polling a port that is not open yet
    raise TimeoutError(f"moto_server did not answer on port {port} in {timeout_s} s")


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """A moto S3 server on a free port for this module, stopped by PID at the end."""
    port = free_port()
    process = subprocess.Popen(
        [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_answers(port, process, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process, grace_s=10)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, moto_url: str) -> str:
    """Fake credentials and boto3 pointed at moto through the standard variable."""
    for name, value in AWS_TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("PERENNIAL_S3_KMS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    return moto_url


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(aws: str) -> str:
    name = f"perennial-{uuid.uuid4().hex[:12]}"
    client = s3_client(aws)
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def test_open_storage_gives_s3_and_boto3_reads_the_endpoint_variable(bucket: str) -> None:
    storage = open_storage(f"s3://{bucket}/perennial")
    assert isinstance(storage, S3Storage)
    storage.write_bytes("landing/d/a.csv", b"x\n1\n", immutable=True)
    # No endpoint_url was passed to S3Storage: the object is in moto only if boto3 used
    # AWS_ENDPOINT_URL_S3 by itself.
    reply = s3_client(os.environ["AWS_ENDPOINT_URL_S3"]).get_object(
        Bucket=bucket, Key="perennial/landing/d/a.csv"
    )
    assert reply["Body"].read() == b"x\n1\n"


def test_immutable_keys_listing_json_and_parquet(bucket: str) -> None:
    storage = S3Storage(f"s3://{bucket}/root")
    storage.write_bytes("landing/d/b.csv", b"a,b\n1,2\n", immutable=True)
    storage.write_bytes("landing/d/b.csv", b"a,b\n1,2\n", immutable=True)  # same bytes: no-op
    with pytest.raises(ImmutableKeyError, match=r"landing/d/b\.csv"):
        storage.write_bytes("landing/d/b.csv", b"a,b\n9,9\n", immutable=True)
    assert storage.read_bytes("landing/d/b.csv") == b"a,b\n1,2\n"
    versions = s3_client(os.environ["AWS_ENDPOINT_URL_S3"]).list_object_versions(
        Bucket=bucket, Prefix="root/landing/d/b.csv"
    )
    assert len(versions["Versions"]) == 1  # the no-op and the refusal wrote nothing
    with pytest.raises(ValueError, match="raw data"):
        storage.delete("landing/d/b.csv")

    storage.write_json("validated/d/a.json", {"rows": 2})
    storage.write_parquet("validated/d/a.parquet", pd.DataFrame({"x": [1, 2]}))
    storage.write_json("validated/d/deeper/c.json", {})  # not directly under the prefix
    assert storage.read_json("validated/d/a.json") == {"rows": 2}
    assert storage.read_parquet("validated/d/a.parquet")["x"].tolist() == [1, 2]
    assert storage.list("validated/d") == ["validated/d/a.json", "validated/d/a.parquet"]
    assert storage.list("nothing/here") == []
    assert storage.exists("validated/d/a.json") and not storage.exists("validated/d/zzz.json")
    storage.delete("validated/d/a.json")
    assert not storage.exists("validated/d/a.json")
    with pytest.raises(FileNotFoundError, match=r"validated/d/a\.json"):
        storage.read_bytes("validated/d/a.json")


def test_every_object_is_encrypted_aes256_or_kms(
    bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, client = S3Storage(f"s3://{bucket}"), s3_client(os.environ["AWS_ENDPOINT_URL_S3"])
    storage.write_json("reference/d/1.json", {"v": 1})
    assert client.head_object(Bucket=bucket, Key="reference/d/1.json")["ServerSideEncryption"] == (
        "AES256"
    )
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    monkeypatch.setenv("PERENNIAL_S3_KMS_KEY_ID", key_arn)
    storage.write_bytes("landing/d/2.csv", b"a\n1\n", immutable=True)
    head = client.head_object(Bucket=bucket, Key="landing/d/2.csv")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn


@pytest.mark.parametrize("immutable", [False, True], ids=["managed-transfer", "conditional"])
def test_large_objects_go_up_in_parts(bucket: str, immutable: bool) -> None:
    storage, client = S3Storage(f"s3://{bucket}/p"), s3_client(os.environ["AWS_ENDPOINT_URL_S3"])
    blob = os.urandom(MULTIPART_BYTES * 2 + 12345)  # three parts
    storage.write_bytes("landing/d/big.csv", blob, immutable=immutable)
    assert storage.read_bytes("landing/d/big.csv") == blob
    head = client.head_object(Bucket=bucket, Key="p/landing/d/big.csv")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    assert head["ServerSideEncryption"] == "AES256"
    if immutable:
        storage.write_bytes("landing/d/big.csv", blob, immutable=True)  # same bytes: no-op
        with pytest.raises(ImmutableKeyError):
            storage.write_bytes("landing/d/big.csv", blob[:-1] + b"!", immutable=True)
        versions = client.list_object_versions(Bucket=bucket, Prefix="p/landing/d/big.csv")
        assert len(versions["Versions"]) == 1
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- transient server errors ------------------------------------------------------------------


class FailingProxy:
    """An HTTP proxy in front of moto that answers an error (503 unless told) to the first
    `failures` requests matching (method, path suffix, query fragment). With `forward_first`,
    the failing request still reaches moto and only its reply is lost: the nastiest case for a
    retried write."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.rules: list[dict[str, Any]] = []
        self.seen: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _handle(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def fail(
        self,
        method: str,
        path_end: str,
        failures: int,
        query: str = "",
        forward_first: bool = False,
        status: int = 503,
        code: str = "ServiceUnavailable",
    ) -> None:
        self.rules.append(
            {
                "method": method,
                "path_end": path_end,
                "query": query,
                "left": failures,
                "forward": forward_first,
                "status": status,
                "code": code,
            }
        )

    def _matching_rule(self, method: str, target: str) -> dict[str, Any] | None:
        path, _, query = target.partition("?")
        with self.lock:
            for rule in self.rules:
                if (
                    rule["left"] > 0
                    and rule["method"] == method
                    and path.endswith(rule["path_end"])
                    and rule["query"] in query
                ):
                    rule["left"] -= 1
                    return rule
        return None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        rule = self._matching_rule(request.command, request.path)
        status, headers, payload = 503, {"Content-Type": "application/xml"}, b""
        if rule is None or rule["forward"]:
            status, headers, payload = self._forward(request, body)
        if rule is not None:
            status, headers = rule["status"], {"Content-Type": "application/xml"}
            payload = f"<Error><Code>{rule['code']}</Code><Message>test</Message></Error>".encode()
        with self.lock:
            self.seen.append((request.command, request.path, status))
        request.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)

    def _forward(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            headers = {k: v for k, v in request.headers.items() if k.lower() != "connection"}
            connection.request(request.command, request.path, body=body, headers=headers)
            reply = connection.getresponse()
            return reply.status, dict(reply.getheaders()), reply.read()
        finally:
            connection.close()

    def count(self, method: str, path_end: str) -> int:
        return sum(
            1 for m, p, _ in self.seen if m == method and p.partition("?")[0].endswith(path_end)
        )

    def __enter__(self) -> FailingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def proxy(aws: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FailingProxy]:
    with FailingProxy(aws) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", running.url)
        yield running


def versions_of(bucket: str, key: str, endpoint: str) -> list[dict[str, Any]]:
    listing = s3_client(endpoint).list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def test_503_before_the_write_is_retried_and_the_object_written_once(
    bucket: str, proxy: FailingProxy, moto_url: str
) -> None:
    storage = S3Storage(f"s3://{bucket}/state")
    proxy.fail("PUT", "/state/landing/d/2013-01.csv", failures=2)
    proxy.fail("GET", "/state/landing/d/2013-01.csv", failures=1)
    storage.write_bytes("landing/d/2013-01.csv", b"a,b\n1,2\n", immutable=True)
    assert storage.read_bytes("landing/d/2013-01.csv") == b"a,b\n1,2\n"
    assert proxy.count("PUT", "/state/landing/d/2013-01.csv") == 3  # two 503s, then success
    assert proxy.count("GET", "/state/landing/d/2013-01.csv") == 2
    assert len(versions_of(bucket, "state/landing/d/2013-01.csv", moto_url)) == 1


def test_lost_reply_to_an_immutable_put_does_not_duplicate_or_fail(
    bucket: str, proxy: FailingProxy, moto_url: str
) -> None:
    """The first put reaches S3 but its reply is a 503: the retry meets the object, S3 refuses
    it (If-None-Match), and the storage sees its own bytes there and succeeds."""
    storage = S3Storage(f"s3://{bucket}/state")
    proxy.fail("PUT", "/state/landing/d/2013-02.csv", failures=1, forward_first=True)
    storage.write_bytes("landing/d/2013-02.csv", b"a,b\n3,4\n", immutable=True)
    assert proxy.count("PUT", "/state/landing/d/2013-02.csv") == 2
    stored = versions_of(bucket, "state/landing/d/2013-02.csv", moto_url)
    assert len(stored) == 1
    assert storage.read_bytes("landing/d/2013-02.csv") == b"a,b\n3,4\n"


def test_503_on_a_part_of_a_multipart_upload_is_retried(
    bucket: str, proxy: FailingProxy, moto_url: str
) -> None:
    storage = S3Storage(f"s3://{bucket}/state")
    blob = os.urandom(MULTIPART_BYTES * 2 + 1)
    proxy.fail("PUT", "/state/landing/d/big.csv", failures=2, query="partNumber=2")
    proxy.fail(
        "POST", "/state/landing/d/big.csv", failures=1, query="uploadId=", forward_first=True
    )
    storage.write_bytes("landing/d/big.csv", blob, immutable=True)
    assert storage.read_bytes("landing/d/big.csv") == blob
    assert len(versions_of(bucket, "state/landing/d/big.csv", moto_url)) == 1
    assert s3_client(moto_url).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_bucket_refusing_aes256_uploads_names_the_kms_variable(
    bucket: str, proxy: FailingProxy
) -> None:
    # What the Terraform data bucket's policy does to an upload without SSE-KMS.
    proxy.fail("PUT", "/state/landing/d/x.csv", failures=1, status=403, code="AccessDenied")
    with pytest.raises(PermissionError, match="PERENNIAL_S3_KMS_KEY_ID"):
        S3Storage(f"s3://{bucket}/state").write_bytes("landing/d/x.csv", b"x", immutable=True)


# --- the training flow on S3 ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.e2e
def test_training_flow_end_to_end_on_s3(
    prefect_server: None,
    bucket: str,
    moto_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.training import training
    from tasks.core.config import load_config
    from tasks.data.features import model_inputs
    from tasks.registry.client import CHAMPION, connect, version_by_alias
    from tasks.registry.model_store import load_model

    monkeypatch.setenv("PERENNIAL_HOME", f"s3://{bucket}/perennial")
    monkeypatch.setenv("PERENNIAL_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("PERENNIAL_OPTUNA_STORAGE", f"journal:{tmp_path / 'optuna.journal'}")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", moto_url)
    # An S3 home has no local place for the model signing key: it comes from the environment.
    monkeypatch.setenv("PERENNIAL_MODEL_SIGNING_KEY", "test-signing-key-" + "s" * 32)
    config = load_config()

    result = training(batches="2013-01..2013-03", trials=1, reason="test: s3 state root")

    assert result.promoted and result.version == "1"
    s3 = s3_client(moto_url)
    keys = {
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    }
    for batch in ("2013-01", "2013-02", "2013-03"):
        assert f"perennial/landing/flights/{batch}.csv" in keys
        assert f"perennial/validated/flights/{batch}.parquet" in keys
        assert f"perennial/validated/flights/{batch}.json" in keys
    landing = s3.head_object(Bucket=bucket, Key="perennial/landing/flights/2013-01.csv")
    assert landing["ServerSideEncryption"] == "AES256"
    assert any(k.startswith("mlflow/") and k.endswith("/MLmodel") for k in keys), sorted(keys)
    assert any(k.endswith("/artifacts/booster.ubj") for k in keys), sorted(keys)
    assert not any(k.endswith(".pkl") for k in keys), sorted(keys)
    champion = version_by_alias(config, CHAMPION)
    assert champion is not None
    artifact_uri = connect(config).get_run(champion.run_id).info.artifact_uri
    assert artifact_uri.startswith(f"s3://{bucket}/mlflow/"), artifact_uri
    # The champion loads back from S3 and scores the landed data.
    frame = open_storage(config.home).read_parquet("validated/flights/2013-03.parquet")
    model = load_model(config, champion.version)
    assert model.score(model_inputs(frame, config)).shape == (len(frame),)


def test_create_bytes_lets_one_writer_win_on_s3(bucket: str) -> None:
    """The claim behind de-duplicated alerts: a conditional put, so a second create loses."""
    storage = S3Storage(f"s3://{bucket}/root")
    assert storage.create_bytes("alerts/d/drift/2013-07.1.json", b'{"first": true}')
    assert not storage.create_bytes("alerts/d/drift/2013-07.1.json", b'{"second": true}')
    assert storage.read_bytes("alerts/d/drift/2013-07.1.json") == b'{"first": true}'
