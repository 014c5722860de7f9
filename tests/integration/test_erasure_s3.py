"""`perennial forget` on an S3 home, against a real `moto_server` over HTTP, versioning on: after
the erasure, no version of any object in the bucket holds the subject's rows (a plain delete or
overwrite would leave them in older versions), destroyed raw files have no version and no delete
marker left, and a rewritten file has exactly one version."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest

from tasks.core import catalog
from tasks.core.storage import S3Storage
from tasks.data.erasure import finish, forget
from tasks.data.ingest import landed_history
from tasks.data.subject import Subject
from tests.erasure_scenario import BATCHES, SUBJECT, people_config, store_everything
from tests.integration.test_s3_storage import aws, bucket, moto_url, s3_client  # noqa: F401

pytestmark = [pytest.mark.integration]


def every_version(client: Any, name: str) -> list[dict[str, Any]]:
    pages = client.get_paginator("list_object_versions").paginate(Bucket=name)
    return [
        {**item, "marker": marker}
        for page in pages
        for marker, listed in ((False, "Versions"), (True, "DeleteMarkers"))
        for item in page.get(listed, [])
    ]


def subject_rows(client: Any, name: str, version: dict[str, Any], hashed: str) -> int:
    key = version["Key"]
    if version["marker"] or not key.endswith((".csv", ".parquet")):
        return 0
    body = client.get_object(Bucket=name, Key=key, VersionId=version["VersionId"])["Body"].read()
    frame = (
        pd.read_parquet(io.BytesIO(body))
        if key.endswith(".parquet")
        else pd.read_csv(io.BytesIO(body))
    )
    return int((frame.get("customer_id", pd.Series(dtype=str)) == hashed).sum())


def test_no_object_version_keeps_the_subject(
    bucket: str,  # noqa: F811
    aws: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PERENNIAL_PRIVACY_KEY", "a-test-key-that-is-long-enough-for-hmac-0123")
    url = f"s3://{bucket}/home"
    storage, config = S3Storage(url), people_config(url)
    scenario = store_everything(storage, config)
    # A derived file written twice: its first version must go too.
    validated = catalog.key("validated", config, batch=BATCHES[1])
    storage.write_bytes(validated, storage.read_bytes(validated))
    client, hashed = s3_client(aws), scenario.hashed_subject
    before = every_version(client, bucket)
    assert sum(subject_rows(client, bucket, v, hashed) > 0 for v in before) >= 9

    erasure = forget(storage, config, Subject(config, f"customer_id == '{SUBJECT}'"), "request")
    audit = finish(storage, config, erasure)

    after = every_version(client, bucket)
    assert [v["Key"] for v in after if subject_rows(client, bucket, v, hashed)] == []
    destroyed = [f.key for f in erasure.files if f.action == "destroyed"]
    assert len(destroyed) == 3
    for key in destroyed:
        assert [v for v in after if v["Key"] == f"home/{key}"] == []  # no version, no marker
    for erased in erasure.files:
        if erased.action == "rewritten":
            kept = [v for v in after if v["Key"] == f"home/{erased.key}"]
            assert [v["marker"] for v in kept] == [False], erased.key
    for batch in BATCHES:
        newest = landed_history(storage, config, batch)[-1]
        assert storage.exists(newest.key) and newest.source.startswith("perennial forget")
    assert storage.exists(audit)
