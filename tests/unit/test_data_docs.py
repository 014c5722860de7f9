"""The Data Docs queue (`tasks/data/data_docs.py`): one worker serves every queued request in one
process (one GE context), releases its lock, and a failing request does not block the others.
GE itself is replaced here by a recorder; the real worker runs in tests/integration/test_gate.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tasks.data import data_docs


def queue(docs: Path, *batches: str) -> None:
    folder = docs / data_docs.REQUESTS
    folder.mkdir(parents=True, exist_ok=True)
    for position, batch in enumerate(batches):
        (folder / f"{position:03d}-{batch}.json").write_text(json.dumps({"batch": batch}))


def test_one_worker_serves_the_whole_queue_in_order_and_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    monkeypatch.setattr(data_docs, "_serve", lambda docs, request: served.append(request["batch"]))
    queue(tmp_path, "2013-01", "2013-02", "2013-03")

    assert data_docs.serve_requests(tmp_path) == 3

    assert served == ["2013-01", "2013-02", "2013-03"]
    assert not list((tmp_path / data_docs.REQUESTS).iterdir())
    assert not (tmp_path / data_docs.LOCK).exists() and not data_docs.worker_running(tmp_path)


def test_a_failing_request_is_dropped_and_the_next_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    served: list[str] = []

    def serve(docs: Path, request: dict[str, Any]) -> None:
        if request["batch"] == "2013-01":
            raise FileNotFoundError("no landing/flights/2013-01.csv")
        served.append(request["batch"])

    monkeypatch.setattr(data_docs, "_serve", serve)
    queue(tmp_path, "2013-01", "2013-02")

    assert data_docs.serve_requests(tmp_path) == 2

    assert served == ["2013-02"]
    assert "FileNotFoundError: no landing/flights/2013-01.csv" in capsys.readouterr().out


def test_a_running_worker_keeps_the_queue_and_a_dead_one_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []
    monkeypatch.setattr(data_docs, "_serve", lambda docs, request: served.append(request["batch"]))
    queue(tmp_path, "2013-01")
    (tmp_path / data_docs.LOCK).write_text(str(os.getpid()))  # alive: this very process

    assert data_docs.serve_requests(tmp_path) == 0 and served == []

    (tmp_path / data_docs.LOCK).write_text("999999999")  # no such process
    assert data_docs.serve_requests(tmp_path) == 1 and served == ["2013-01"]
