"""`perennial forget` on a local home: a made-up customer's rows leave every stored copy (landing
revisions, quarantine, validated, predictions, live samples), a dry run changes nothing, the
audit entry holds no value, and an erasure killed mid-way (SIGKILL, in a real process) resumes
and leaves no half-written file."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core import catalog
from tasks.core.expression import ExpressionError
from tasks.core.storage import Storage
from tasks.data.erasure import finish, forget
from tasks.data.ingest import landed_history, landed_record
from tasks.data.subject import Subject
from tests.conftest import ROOT
from tests.erasure_scenario import (
    BATCHES,
    ROWS,
    SUBJECT,
    Stored,
    frame_of,
    people_config,
    store_everything,
)


@pytest.fixture
def stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Storage, Stored]:
    monkeypatch.delenv("PERENNIAL_PRIVACY_KEY", raising=False)
    storage = Storage(tmp_path / "home")
    return storage, store_everything(storage, people_config(str(tmp_path / "home")))


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def subject_rows_left(storage: Storage, hashed: str) -> dict[str, int]:
    """Rows of the subject in every data file under the home."""
    left = {}
    for path in storage.root.rglob("*"):
        if path.suffix in (".csv", ".parquet"):
            key = str(path.relative_to(storage.root))
            frame = frame_of(storage, key)
            if "customer_id" in frame.columns:
                left[key] = int((frame["customer_id"] == hashed).sum())
    return left


def test_the_subject_leaves_every_copy_and_the_audit_keeps_no_value(
    stored: tuple[Storage, Stored],
) -> None:
    storage, scenario = stored
    config, hashed = scenario.config, scenario.hashed_subject
    before = subject_rows_left(storage, hashed)
    # landing r1 and r2 of 2013-01, 2013-02, the quarantined copy, validated x2, live x2
    assert sum(1 for n in before.values() if n == 3) == 8, before
    erasure = forget(storage, config, Subject(config, f"customer_id == '{SUBJECT}'"), "request 1")
    audit_key = finish(storage, config, erasure)

    assert all(n == 0 for n in subject_rows_left(storage, hashed).values())
    for batch in BATCHES:
        newest = landed_record(storage, config, batch)
        assert newest is not None and newest.source.startswith("perennial forget")
        assert len(frame_of(storage, newest.key)) == ROWS - 3
        # Every older revision's bytes are gone, its record (hashes, no values) stays.
        history = landed_history(storage, config, batch)
        assert [storage.exists(r.key) for r in history] == [False] * (len(history) - 1) + [True]
        # The validated batch now speaks of the new revision: the gate need not run again.
        summary = storage.read_json(catalog.key("validated_summary", config, batch=batch))
        assert (summary["sha256"], summary["rows"]) == (newest.sha256, ROWS - 3)
        # Predictions keep their rows, renumbered to their place in the validated batch.
        validated = frame_of(storage, catalog.key("validated", config, batch=batch))
        scores = frame_of(storage, catalog.key("predictions", config, batch=batch))
        assert len(scores) == ROWS - 3
        assert list(validated["time_hour"].iloc[scores["row"]]) == list(scores["time_hour"])

    entry = storage.read_json(audit_key)
    assert entry["reason"] == "request 1" and entry["by"] and entry["finished_at"]
    assert entry["rows"] == {
        "landing": 3 + 3 + 3,  # destroyed: 2013-01 r1 and r2, 2013-02 r1
        "predictions": 6,
        "validated": 6,
        "quarantine": 3,
        "live": 6,
    }
    text = json.dumps(entry)
    assert SUBJECT not in text and hashed not in text
    assert not storage.exists(catalog.key("erasure_journal", config, erasure=erasure.id))
    # Run again: nothing left to erase.
    assert forget(storage, config, Subject(config, f"customer_id == '{SUBJECT}'"), "r").files == []


def test_a_dry_run_changes_nothing(stored: tuple[Storage, Stored]) -> None:
    storage, scenario = stored
    before = snapshot(storage.root)
    erasure = forget(
        storage,
        scenario.config,
        Subject(scenario.config, f"customer_id in ['{SUBJECT}', 'C-nobody']"),
        "why",
        dry_run=True,
    )
    assert snapshot(storage.root) == before
    assert erasure.rows["validated"] == 6 and erasure.rows["predictions"] == 6


def test_a_hashed_column_is_compared_only_for_equality(stored: tuple[Storage, Stored]) -> None:
    config = stored[1].config
    with pytest.raises(ExpressionError, match="hashed column"):
        Subject(config, "customer_id > 'C-0001'")
    with pytest.raises(ExpressionError, match="calls are not allowed"):
        Subject(config, "__import__('os').system('true') == 1")
    # An unhashed column compares as the data holds it (numbers as numbers).
    assert Subject(config, "amount > 1000").columns == ["amount"]


KILLED_MIDWAY = """
import os, signal, sys
sys.path.insert(0, {root!r})
from tasks.core.storage import Storage
from tasks.data.erasure import forget
from tasks.data.subject import Subject
from tests.erasure_scenario import SUBJECT, people_config

def killed(self, key):  # the first destruction of raw bytes: after the new revisions, the
    os.kill(os.getpid(), signal.SIGKILL)  # rewritten predictions and validated batch
Storage.erase = killed
config = people_config({home!r})
forget(Storage({home!r}), config, Subject(config, f"customer_id == '{{SUBJECT}}'"), "request")
"""


def test_an_erasure_killed_midway_resumes_and_leaves_no_half_written_file(
    stored: tuple[Storage, Stored],
) -> None:
    storage, scenario = stored
    config, hashed = scenario.config, scenario.hashed_subject
    script = KILLED_MIDWAY.format(root=str(ROOT), home=str(storage.root))
    killed = subprocess.run([sys.executable, "-c", script], env=os.environ, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    journal = catalog.key(
        "erasure_journal", config, erasure=Subject(config, "customer_id == 'C-0007'").id
    )
    assert storage.exists(journal)  # killed with work left
    assert not [p for p in storage.root.rglob("*") if p.name.endswith(".tmp")]
    assert any(subject_rows_left(storage, hashed).values())

    erasure = forget(storage, config, Subject(config, f"customer_id == '{SUBJECT}'"), "request")
    finish(storage, config, erasure)
    assert all(n == 0 for n in subject_rows_left(storage, hashed).values())
    for batch in BATCHES:
        scores = frame_of(storage, catalog.key("predictions", config, batch=batch))
        validated = frame_of(storage, catalog.key("validated", config, batch=batch))
        assert len(scores) == len(validated) == ROWS - 3  # renumbered once, not twice
        assert list(validated["time_hour"].iloc[scores["row"]]) == list(scores["time_hour"])
    assert erasure.rows["predictions"] == 6 and erasure.rows["validated"] == 6
    assert not storage.exists(journal)
