"""The native checks of the gate (`tasks/data/checks.py`) on hand-made frames and suites: GE's
semantics (`mostly` over non-null values, vacuous success, unexpected shares, missing columns,
KL divergence), and `NotNative` for anything they do not reproduce, so that GE decides instead.
(Parity with real GE on real batches: tests/integration/test_gate_parity.py.)"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.core.batches import parse_times
from tasks.core.config import PerennialConfig, load_config
from tasks.data.checks import NotNative, _repeated, evaluate_suite
from tasks.data.expectations import Outcome
from tasks.data.raw_files import read_csv_fast, read_raw, utc_times
from tests.conftest import FLIGHTS

BATCH = "2013-01"


def run(tmp_path: Path, frame: pd.DataFrame, *expectations: dict[str, Any]) -> list[Outcome]:
    """`expectations` as a suite in a GE folder of its own, checked natively on `frame`."""
    config = load_config(FLIGHTS)
    folder = tmp_path / "gx"
    (folder / "expectations").mkdir(parents=True, exist_ok=True)
    suite = {"name": config.validation.suite, "meta": {}, "expectations": list(expectations)}
    (folder / "expectations" / f"{config.validation.suite}.json").write_text(json.dumps(suite))
    copy: PerennialConfig = config.model_copy(
        update={"validation": config.validation.model_copy(update={"gx_root": folder})}
    )
    return evaluate_suite(frame, copy, BATCH)


def rule(kind: str, severity: str = "critical", **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {}, "severity": severity, "id": kind}


def test_mostly_counts_non_null_values_and_an_empty_column_passes(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 50.0, np.nan, np.nan], "empty": [np.nan] * 5})
    between, strict, empty = run(
        tmp_path,
        frame,
        rule("expect_column_values_to_be_between", column="x", min_value=0, max_value=10),
        rule(
            "expect_column_values_to_be_between",
            column="x",
            min_value=0,
            max_value=10,
            mostly=0.6,
        ),
        rule("expect_column_values_to_be_between", column="empty", min_value=0, max_value=1),
    )
    assert (between.success, between.unexpected_count) == (False, 1)
    assert between.unexpected_percent == pytest.approx(100 / 3)  # of the 3 non-null values
    assert between.examples == [50.0] and between.rows == [{"x": 50.0, "empty": None}]
    assert strict.success  # 2 of 3 >= 0.6
    assert empty.success and empty.unexpected_percent is None  # vacuously, as GE


def test_not_null_counts_every_row(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, np.nan, np.nan, 4.0]})
    (outcome,) = run(tmp_path, frame, rule("expect_column_values_to_not_be_null", column="x"))
    assert (outcome.success, outcome.unexpected_count, outcome.unexpected_percent) == (
        False,
        2,
        50.0,
    )
    assert outcome.examples == [None, None]


def test_a_missing_column_fails_with_ges_words_and_sets_report_it(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1], "b": [2]})
    null, columns = run(
        tmp_path,
        frame,
        rule("expect_column_values_to_not_be_null", column="c"),
        rule("expect_table_columns_to_match_set", column_set=["a", "c"], exact_match=True),
    )
    assert not null.success and null.error == 'Error: The column "c" in BatchData does not exist.'
    assert not columns.success and columns.examples == ["missing c", "unexpected b"]


def test_compound_keys_repeat_as_pandas_duplicated_says() -> None:
    generator = np.random.default_rng(7)
    keys = pd.DataFrame(
        {
            "carrier": generator.choice(["AA", "B6", None], 5000),
            "flight": generator.choice([1.0, 2.0, np.nan], 5000),
            "hour": generator.integers(0, 2000, 5000),
        }
    ).astype({"carrier": "str"})
    assert (_repeated(keys) == keys.duplicated(keep=False).to_numpy()).all()
    assert _repeated(keys).any() and not _repeated(keys).all()


def test_compound_unique_ignores_rows_with_every_key_missing(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 1.0, np.nan, np.nan], "b": [2.0, 2.0, np.nan, np.nan]})
    (outcome,) = run(
        tmp_path, frame, rule("expect_compound_columns_to_be_unique", column_list=["a", "b"])
    )
    assert (outcome.unexpected_count, outcome.unexpected_percent) == (2, 100.0)
    assert outcome.column == "a, b"


def test_kl_divergence_as_ge_computes_it(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [0.5, 1.5, 1.5, 2.5], "c": ["a", "a", "b", "z"]})
    bins = {"bins": [-math.inf, 1.0, 2.0, math.inf], "weights": [0.25, 0.5, 0.25]}
    numeric, unseen, empty = run(
        tmp_path,
        frame.assign(none=np.nan),
        rule(
            "expect_column_kl_divergence_to_be_less_than",
            column="x",
            partition_object=bins,
            threshold=0.1,
        ),
        rule(
            "expect_column_kl_divergence_to_be_less_than",
            column="c",
            partition_object={"values": ["a", "b"], "weights": [0.5, 0.5]},
            threshold=0.1,
        ),
        rule(
            "expect_column_kl_divergence_to_be_less_than",
            column="none",
            partition_object=bins,
            threshold=0.1,
        ),
    )
    assert numeric.success and numeric.observed == pytest.approx(0.0)  # same shares
    assert not unseen.success and unseen.observed is None  # "z" was never seen: infinite
    assert not empty.success and empty.observed is None  # GE divides by zero values


@pytest.mark.parametrize(
    "suite",
    [
        rule("expect_column_values_to_match_regex", column="x", regex="^a"),  # unknown type
        rule("expect_column_values_to_be_between", column="x", min_value=0, row_condition="y"),
        rule("expect_column_values_to_be_in_type_list", column="x", type_list=["object"]),
        rule("expect_column_values_to_be_between", column="o", min_value=0, max_value=1),
    ],
    ids=["unknown type", "unknown argument", "unknown type name", "python objects"],
)
def test_what_the_native_checks_do_not_reproduce_is_left_to_ge(
    tmp_path: Path, suite: dict[str, Any]
) -> None:
    frame = pd.DataFrame({"x": [1, 2], "o": pd.Series([1, "a"], dtype=object)})
    with pytest.raises(NotNative):
        run(tmp_path, frame, suite)


@pytest.mark.parametrize(
    "data",
    [
        b"a,b,c,t\n1,2.5,x,2013-01-01T10:00:00Z\n2,NA,,2013-01-01T11:00:00Z\n,1e-3,NULL,\n",
        b'a,b\n"two\nlines",1\nx,2\n',  # a quoted newline
    ],
    ids=["nulls and times", "quoted newline"],
)
def test_the_fast_reader_reads_what_pandas_reads(data: bytes) -> None:
    fast = read_csv_fast(data)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, pd.read_csv(io.BytesIO(data)), check_exact=True)


@pytest.mark.parametrize(
    "data",
    [
        b"a,b\n1,\n2,\n",  # an all-null column: float64 for pandas, null for pyarrow
        b"a,b\nTrue,1\nFalse,2\n",  # booleans
        b"a,b\n2013-01-01,1\n2013-01-02,2\n",  # dates pyarrow would infer
        b",a\n0,1\n1,2\n",  # a nameless column: "Unnamed: 0" for pandas
    ],
    ids=["all null", "booleans", "dates", "nameless column"],
)
def test_files_pyarrow_reads_differently_are_read_by_pandas(
    data: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert read_csv_fast(data) is None  # refused by the fast reader, so pandas reads them
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # the fast path is tried
    pd.testing.assert_frame_equal(read_raw(data, ".csv"), pd.read_csv(io.BytesIO(data)))


def test_utc_times_are_the_instants_parse_times_gives() -> None:
    values = pd.Series(
        ["2013-01-01T10:00:00Z", None, "2013-03-10 07:00:00Z"], index=[7, 3, 5], dtype="str"
    )
    fast = utc_times(values)
    assert fast is not None
    slow = parse_times(values, "America/New_York").dt.tz_convert("UTC")
    pd.testing.assert_series_equal(
        fast.astype("datetime64[ns, UTC]"), slow.astype("datetime64[ns, UTC]")
    )
    for other in (["2013-01-01T10:00:00+01:00"], ["2013-01-01 10:00"], ["2013-02-30T10:00:00Z"]):
        assert utc_times(pd.Series(other, dtype="str")) is None  # parse_times decides
