"""GE stays the authority of the gate: real Great Expectations and the native checks
(`tasks/data/checks.py`) give the same outcomes (verdict, failed expectations and columns, counts,
examples, offending rows) on every content-level bad batch of the gate battery and on real
months; and a suite holding an expectation the native checks do not know is decided by GE."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.data.checks import evaluate_suite
from tasks.data.expectations import Outcome, apply_severity, run_suite
from tasks.data.ingest import land_batch
from tasks.data.parse import typed_frame
from tasks.data.raw_files import read_raw
from tasks.data.source import extract_from_source
from tasks.data.validate import GREAT_EXPECTATIONS, NATIVE, gate_batch
from tests.conftest import FLIGHTS
from tests.integration.test_gate_battery import BATCH, CASES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONTENT_CASES = [case for case in CASES if case.rule.startswith("expect_")]
GOOD_MONTHS = ["2013-02", "2013-07", "2013-12"]


@pytest.fixture(scope="module")
def config() -> PerennialConfig:
    return load_config(FLIGHTS)


@pytest.fixture(scope="module")
def april(config: PerennialConfig) -> pd.DataFrame:
    data, ext, _ = extract_from_source(config, BATCH)
    return read_raw(data, ext)


def both(data: bytes, config: PerennialConfig, batch: str) -> tuple[list[Outcome], list[Outcome]]:
    """GE's outcomes and the native ones on the frame the gate checks (same reader, typing)."""
    frame = typed_frame(read_raw(data, ".csv"), config)
    severity = config.validation.severity
    ge = apply_severity(run_suite(frame, config, batch), severity)
    native = apply_severity(evaluate_suite(frame, config, batch), severity)
    return ge, native


def plain(outcome: Outcome) -> dict[str, Any]:
    """An outcome as the reason file stores it (JSON), for field-by-field comparison."""
    return dict(json.loads(json.dumps(asdict(outcome), default=str)))


def verdict(outcomes: list[Outcome]) -> bool:
    return not any(not o.success and o.severity == "critical" for o in outcomes)


def failed(outcomes: list[Outcome]) -> list[tuple[str, str, str]]:
    return sorted((o.expectation, o.column or "", o.severity) for o in outcomes if not o.success)


def order(outcome: Outcome) -> tuple[str, str, str, str]:
    return (outcome.expectation, outcome.column or "", outcome.severity, str(outcome.observed))


def assert_same(ge: list[Outcome], native: list[Outcome]) -> None:
    assert verdict(native) == verdict(ge)
    assert failed(native) == failed(ge)
    # Field by field, each expectation matched with GE's (GE orders results its own way).
    for mine, theirs in zip(sorted(native, key=order), sorted(ge, key=order), strict=True):
        a, b = plain(mine), plain(theirs)
        for name in ("observed", "unexpected_percent"):
            if isinstance(a[name], float) and isinstance(b[name], float):
                assert math.isclose(a[name], b[name], rel_tol=1e-9), (name, a, b)
                a[name] = b[name]
        if b["error"]:  # the fact of an error, not GE's wording of it, decides
            assert a["error"], (a, b)
            a["error"] = b["error"]
        assert a == b


@pytest.mark.parametrize("case", CONTENT_CASES, ids=[c.name for c in CONTENT_CASES])
def test_native_checks_match_great_expectations_on_each_bad_batch(
    case: Any, april: pd.DataFrame, config: PerennialConfig
) -> None:
    ge, native = both(case.make(april), config, BATCH)
    assert_same(ge, native)
    assert any(o.expectation == case.rule and not o.success for o in native)


@pytest.mark.parametrize("batch", GOOD_MONTHS)
def test_native_checks_match_great_expectations_on_real_months(
    batch: str, config: PerennialConfig
) -> None:
    data, _, _ = extract_from_source(config, batch)
    ge, native = both(data, config, batch)
    assert_same(ge, native)
    assert all(o.success or o.severity != "critical" for o in native)


def test_an_expectation_the_native_checks_do_not_know_is_decided_by_ge(
    home: Path, tmp_path: Path, config: PerennialConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "false")
    gx_copy = tmp_path / "gx"
    shutil.copytree(config.validation.gx_root, gx_copy, ignore=shutil.ignore_patterns("unc*"))
    config = config.model_copy(
        update={"validation": config.validation.model_copy(update={"gx_root": gx_copy})}
    )
    suite_file = gx_copy / "expectations" / "flights.json"
    suite = json.loads(suite_file.read_text())
    suite["expectations"].append(
        {  # no carrier code has a digit... except 9E: GE must run, and it fails the batch
            "type": "expect_column_values_to_match_regex",
            "kwargs": {"column": "carrier", "regex": "^[A-Z]{2}$"},
            "meta": {},
            "severity": "critical",
            "id": "5d0e4a3b-0000-4000-8000-000000000001",
        }
    )
    suite_file.write_text(json.dumps(suite, indent=2))
    storage = Storage(home)
    land_batch(storage, config, "2013-02", *extract_from_source(config, "2013-02"))

    result = gate_batch(storage, config, "2013-02")

    assert result.engine == GREAT_EXPECTATIONS
    assert not result.passed
    assert [o.expectation for o in result.blocking_failures()] == [
        "expect_column_values_to_match_regex"
    ]
    reason = storage.read_json("quarantine/flights/2013-02.reason.json")
    assert reason["engine"] == GREAT_EXPECTATIONS and reason["failed"][0]["column"] == "carrier"


def test_the_committed_suite_is_decided_natively(
    home: Path, config: PerennialConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "false")
    storage = Storage(home)
    land_batch(storage, config, "2013-02", *extract_from_source(config, "2013-02"))
    result = gate_batch(storage, config, "2013-02")
    assert result.passed and result.engine == NATIVE
    assert storage.read_json("validated/flights/2013-02.json")["engine"] == NATIVE


def test_the_fast_reader_gives_pandas_values_on_every_month(config: PerennialConfig) -> None:
    import io

    from tasks.data.raw_files import read_csv_fast

    for month in range(1, 13):
        data, _, _ = extract_from_source(config, f"2013-{month:02d}")
        fast = read_csv_fast(data)
        assert fast is not None, month  # the fast path, not pandas again
        pd.testing.assert_frame_equal(fast, pd.read_csv(io.BytesIO(data)), check_exact=True)
