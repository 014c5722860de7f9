"""`perennial forget` as a user runs it (a real subprocess): a refused `--where` is one line and
exit 1, a dry run lists what would change and changes nothing, the real run names its audit
entry; no value of the subject is printed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.core.storage import Storage
from tests.conftest import FLIGHTS, ROOT, run_perennial
from tests.erasure_scenario import SUBJECT, store_everything

KEY = {"PERENNIAL_PRIVACY_KEY": "a-test-key-that-is-long-enough-for-hmac-4567"}


@pytest.fixture
def people(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A flights YAML declaring the customers' columns, and a home holding every copy."""
    monkeypatch.setenv(*next(iter(KEY.items())))
    text = FLIGHTS.read_text().replace("home: ../.perennial", f"home: {tmp_path / 'home'}")
    text = text.replace("gx_root: ../great_expectations", f"gx_root: {ROOT}/great_expectations")
    path = tmp_path / "flights.yaml"
    path.write_text(text + "\nprivacy:\n  columns: {email: drop, customer_id: hash}\n")
    config = load_config(path)
    store_everything(Storage(config.home), config)
    return path


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


@pytest.mark.parametrize(
    ("where", "said"),
    [
        ("__import__('os').system('id') == 0", "calls are not allowed"),
        ("customer_id > 'C-0001'", "can only be compared with == != in or not in"),
    ],
)
def test_a_refused_where_is_one_line(people: Path, where: str, said: str) -> None:
    done = run_perennial(KEY, "forget", "--config", str(people), "--where", where, "--reason", "r")
    assert done.returncode == 1, done.stdout + done.stderr
    assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_dry_run_then_erasure(people: Path) -> None:
    home = people.parent / "home"
    before = snapshot(home)
    where = ("--where", f"customer_id == '{SUBJECT}'", "--reason", "request 9")
    dry = run_perennial(KEY, "forget", "--config", str(people), *where, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "flights: would erase the subject's rows" in dry.stdout
    assert "landing/flights/2013-01.csv: 3 rows, destroyed" in dry.stdout
    assert snapshot(home) == before
    done = run_perennial(KEY, "forget", "--config", str(people), *where)
    assert done.returncode == 0, done.stderr
    assert "flights: erased the subject's rows" in done.stdout
    assert "audit entry: audit/flights/erasures/" in done.stdout
    assert SUBJECT not in dry.stdout + done.stdout
    mismatch = run_perennial(KEY, "forget", "--dataset", "other", "--config", str(people), *where)
    assert mismatch.returncode == 2 and "--dataset other" in mismatch.stderr
