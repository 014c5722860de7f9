"""The registry's safety rules that need no trained model: a server error is not "no champion",
alias moves are serialised across processes, artifacts are hashed the same way every time (and
only the model's own files are)."""

from __future__ import annotations

import http.server
import multiprocessing
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.registry.client import CHAMPION, version_by_alias
from tasks.registry.locks import _file_lock
from tasks.registry.model_store import artifact_digest
from tests.conftest import FLIGHTS


class _Failing(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()
        self.wfile.write(b"down for maintenance")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_registry_server_error_is_not_read_as_no_champion(
    failing_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("PERENNIAL_MLFLOW_URI", failing_server)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException):
        version_by_alias(load_config(FLIGHTS), CHAMPION)


def test_no_champion_in_an_empty_registry_is_none(home: Path) -> None:
    assert version_by_alias(load_config(FLIGHTS), CHAMPION) is None


def _hold(path: str, entered: object, release: object) -> None:
    with _file_lock(Path(path)):
        entered.set()  # type: ignore[attr-defined]
        release.wait(60)  # type: ignore[attr-defined]


def test_the_file_lock_serialises_processes(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    entered, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path / "lock"), entered, release))
    holder.start()
    try:
        assert entered.wait(60)
        second = threading.Event()

        def take() -> None:
            with _file_lock(tmp_path / "lock"):
                second.set()

        taker = threading.Thread(target=take)
        taker.start()
        assert not second.wait(1.0)  # held by the other process
        release.set()
        assert second.wait(60)
        taker.join()
    finally:
        release.set()
        holder.join(60)


def test_an_artifact_digest_covers_names_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "booster.ubj").write_bytes(b"trees")
    (tmp_path / "MLmodel").write_text("flavors: {}")
    first = artifact_digest(tmp_path)
    assert artifact_digest(tmp_path) == first
    (tmp_path / "artifacts" / "booster.ubj").write_bytes(b"trees!")
    assert artifact_digest(tmp_path) != first
    (tmp_path / "artifacts" / "booster.ubj").write_bytes(b"trees")
    (tmp_path / "artifacts" / "booster.ubj").rename(tmp_path / "artifacts" / "other.ubj")
    assert artifact_digest(tmp_path) != first
    (tmp_path / "artifacts" / "other.ubj").rename(tmp_path / "artifacts" / "booster.ubj")
    (tmp_path / "scorer.py").write_text("x = 1\n")  # a file added: another digest
    assert artifact_digest(tmp_path) != first
    (tmp_path / "scorer.py").unlink()
    # What `mlflow.pyfunc.load_model("models:/...")` writes into a local store's folder as it
    # loads it in place is no part of the model.
    (tmp_path / "registered_model_meta").write_text("model_name: m\nmodel_version: 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "scorer.cpython-311.pyc").write_bytes(b"\x00")
    assert artifact_digest(tmp_path) == first
