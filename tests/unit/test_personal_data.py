"""The gate's personal-data recognisers: what they find (made-up values from a seeded Faker and
generator, never real people's), what they never report (the values themselves), what they pass
over (the flights data, every row of the year), and how much of a batch they read."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest
from faker import Faker

from tasks.core.config import load_config
from tasks.data.expectations import Outcome
from tasks.data.personal_data import (
    PERSONAL_DATA_CHECK,
    SAMPLE_ROWS,
    Finding,
    kinds_in,
    personal_data,
    scan_column,
    scan_frame,
    scan_text,
    text_columns,
    withheld,
)
from tests.conftest import FLIGHTS

# Made-up subjects: Faker (seeded) for e-mails, cards, IBANs and SSNs; phone numbers from the
# range the North American plan reserves for fiction (555-0100 to 555-0199), which are valid.
fake = Faker("en_US")
fake.seed_instance(32)
AREAS = ["202", "212", "312", "415", "617", "713"]


def fictional_phone(rng: np.random.Generator) -> str:
    area, line = rng.choice(AREAS), int(rng.integers(100, 200))
    style = int(rng.integers(3))
    return [f"+1 {area}-555-0{line}", f"({area}) 555-0{line}", f"{area}.555.0{line}"][style]


@pytest.mark.parametrize(
    ("kind", "make"),
    [
        ("email", fake.email),
        *[
            ("card", lambda kind=kind: fake.credit_card_number(card_type=kind))
            for kind in ("visa16", "visa13", "mastercard", "amex", "discover", "jcb16", "diners")
        ],
        ("iban", fake.iban),
        ("us_ssn", fake.ssn),
        ("ip_address", fake.ipv4),
        ("ip_address", fake.ipv6),
        ("phone", lambda: fictional_phone(np.random.default_rng(7))),
    ],
)
def test_each_kind_is_found_alone_and_inside_free_text(kind: str, make: object) -> None:
    for _ in range(20):
        value = make()  # type: ignore[operator]
        assert kinds_in(value) == {kind}, value
        assert kind in kinds_in(f"Customer wrote: please use {value} from now on, thanks"), value


@pytest.mark.parametrize(
    "value",
    [
        "N14228",  # a tail number
        "UA",
        "2013-01-01T10:00:00Z",
        "2013-01-01 05:00:00",
        "10:00:00",
        "12345",
        "1234567890123456",  # fails Luhn
        "4111 1111 1111 1112",  # one digit off a test card: fails Luhn
        "000-00-0000",  # not a valid SSN
        "999.999.999.999",  # not an address
        "version 1.2.3",
        "GB00WEST12345698765432",  # fails the IBAN checksum
    ],
)
def test_look_alikes_are_not_personal_data(value: str) -> None:
    assert kinds_in(value) == set()


def test_a_finding_names_column_kind_and_share_never_a_value() -> None:
    rng = np.random.default_rng(1)
    emails = [fake.email() for _ in range(50)]
    phones = [fictional_phone(rng) for _ in range(30)]
    frame = pd.DataFrame(
        {
            "tailnum": ["N14228"] * 950 + emails,  # 5 % e-mails, as in the issue
            "notes": ["on time"] * 970 + [f"call me on {p}" for p in phones],
            "distance": np.arange(1000),
        }
    )
    outcomes = personal_data(frame, load_config(FLIGHTS))
    assert [(o.column, o.success) for o in outcomes] == [("tailnum", False), ("notes", False)]
    tailnum, notes = (o.describe() for o in outcomes)
    assert "email in 5.0% of 1,000 sampled rows" in tailnum
    assert "phone in 3.0% of 1,000 sampled rows" in notes
    text = " ".join([tailnum, notes, repr(outcomes)])
    assert not any(value in text for value in emails + phones)
    assert all("\n" not in line for line in (tailnum, notes))  # one line per column


def test_declared_columns_are_not_findings() -> None:
    config = load_config(FLIGHTS)
    config.privacy.columns = {"email": "hash"}
    frame = pd.DataFrame({"email": [fake.email() for _ in range(10)]})
    assert [o.success for o in personal_data(frame, config)] == [True]


def test_other_checks_lose_their_examples_of_a_flagged_column() -> None:
    """An e-mail column that also fails an in-set rule must not leak its values through it."""
    personal = [Outcome(PERSONAL_DATA_CHECK, "tailnum", "critical", False, message="...")]
    others = [
        Outcome("expect_column_values_to_be_in_set", "tailnum", "critical", False,
                examples=["jane@example.org"], rows=[{"tailnum": "jane@example.org"}]),
        Outcome("expect_column_values_to_be_between", "distance", "critical", False,
                examples=[99999], rows=[{"tailnum": "jane@example.org", "distance": 99999}]),
    ]  # fmt: skip
    kept = withheld(others, personal)
    assert "jane@example.org" not in repr(kept)
    assert kept[1].examples == [99999]  # another column's examples stay
    assert withheld(others, []) == others


def test_the_scan_reads_a_bounded_sample_of_a_big_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    original = scan_text

    def counting(name: str, text: Any, sampled: int) -> list[Finding]:
        sizes.append(len(text))
        return original(name, text, sampled)

    monkeypatch.setattr("tasks.data.personal_data.scan_text", counting)
    frame = pd.DataFrame({"code": ["AB"] * 1_000_000, "email": ["x@example.org"] * 1_000_000})
    frame = frame.astype("string[pyarrow]")  # the reader's text, as the gate gets it
    findings = scan_frame(frame)
    assert sizes == [SAMPLE_ROWS, SAMPLE_ROWS]
    assert [(f.column, f.kind, f.share) for f in findings] == [("email", "email", 1.0)]


def flights_year() -> pd.DataFrame:
    from tasks.data.raw_files import read_raw
    from tasks.data.source import extract_from_source

    config = load_config(FLIGHTS)
    months = [extract_from_source(config, f"2013-{m:02d}")[0] for m in range(1, 13)]
    return pd.concat([read_raw(data, ".csv") for data in months], ignore_index=True)


def test_no_finding_anywhere_in_the_flights_year() -> None:
    """Every row of 2013 (336,776), every text column, the time column as text too: none."""
    year = flights_year()
    assert len(year) == 336_776
    columns = text_columns(year)
    assert {"carrier", "tailnum", "origin", "dest", "time_hour"} <= set(columns)
    assert [f for c in columns for f in scan_column(c, year[c])] == []


def test_object_columns_are_scanned_as_text() -> None:
    frame = pd.read_csv(io.StringIO("id,contact\n1,a@example.org\n2,\n"), dtype=object)
    assert [(f.column, f.kind, f.rows) for f in scan_frame(frame)] == [("contact", "email", 1)]


def test_an_integer_column_of_card_numbers_is_found_random_ids_are_not() -> None:
    """A CSV column of bare 16-digit card numbers is read as integers."""
    rng = np.random.default_rng(5)
    cards = [int(fake.credit_card_number(card_type="visa16")) for _ in range(200)]
    ids = rng.integers(4 * 10**15, 5 * 10**15, 200)  # one in ten passes Luhn by chance
    frame = pd.read_csv(
        io.StringIO(
            "card,order_id\n" + "\n".join(f"{c},{i}" for c, i in zip(cards, ids, strict=True))
        )
    )
    assert frame["card"].dtype == np.int64
    assert [(f.column, f.kind, f.share) for f in scan_frame(frame)] == [("card", "card", 1.0)]


def test_no_suite_is_drafted_from_undeclared_personal_data() -> None:
    """A drafted in-set rule would copy the values into the suite's JSON, reviewed like code."""
    from tasks.data.personal_data import PersonalDataError, refuse_personal_data

    emails = [fake.email() for _ in range(20)]
    frames = [pd.DataFrame({"contact": emails, "carrier": ["UA"] * 20})] * 2
    with pytest.raises(PersonalDataError) as refused:
        refuse_personal_data(frames, load_config(FLIGHTS))
    lines = str(refused.value).splitlines()
    assert lines[0] == "1 column(s) hold undeclared personal data; no suite drafted:"
    assert lines[1].startswith("  contact: personal data: email in 100.0% of 20 sampled rows")
    assert len(lines) == 2 and not any(email in str(refused.value) for email in emails)
