"""Personal data: the direct identifiers a batch's text columns may hold, found on a bounded sample.

What is looked for, in whole values and inside free text: e-mail addresses, phone numbers
(`phonenumbers`, valid numbers only), payment card numbers (Luhn checksum, a card-network first
digit), IBANs (ISO 7064 checksum, `python-stdnum`), IP addresses (v4, and v6 written with `::` or
eight groups) and US social security numbers in their `123-45-6789` shape (`python-stdnum`'s
validity rules). A cheap regular expression run over the whole sample by pyarrow picks the few
values worth a closer look; only those reach the checksums and `phonenumbers`. Presidio's
pattern recognisers find the same on a planted sample at a hundredth of the speed (NOTES.md).

Text columns are scanned for every kind; integer columns for card numbers only, and only when
most of their long numbers are valid ones: a phone number stored as an integer looks like any
other number.
A finding names the column, the kind and the share of sampled rows, never a value: the reasons,
logs and alerts it reaches must not become a copy of what they warn about.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.core.config_section import ConfigError
from tasks.data.expectations import Outcome

SAMPLE_ROWS = 20_000  # rows scanned per column: the gate's speed holds at any batch size
SAMPLE_SEED = 20260  # the same batch is always judged on the same rows
PHONE_REGION = "US"  # numbers written without a country code are read as this country's
CARD_COLUMN_SHARE = 0.5  # of an integer column's long numbers, valid cards for a finding

# Values worth a closer look: an '@', a run of at least seven digits and separators, or an IPv6
# `::`. Anything else (codes, words, short numbers, timestamps' short runs) is passed over.
CANDIDATE = r"@|[0-9][0-9 .()+/-]{5,}[0-9]|[0-9a-fA-F]::|::[0-9a-fA-F]"
# ... but a whole value that is a date or a time (`2013-01-01`, `2013-01-01T10:00:00Z`) is not.
TIME_VALUE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:?[0-9]{2})?)?$"
)

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
IBAN = re.compile(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b")
CARD = re.compile(r"(?<![0-9])[2-6](?:[ -]?[0-9]){12,18}(?![0-9])")
SSN = re.compile(r"(?<![0-9-])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9-])")
IPV4 = re.compile(r"(?<![0-9.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?![0-9.])")
IPV6 = re.compile(r"(?<![0-9A-Fa-f:])[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?![0-9A-Fa-f:])")


@dataclass(frozen=True)
class Finding:
    """Personal data of one kind in one column: the share of the sampled rows holding it."""

    column: str
    kind: str
    rows: int  # sampled rows holding it
    sampled: int  # rows sampled

    @property
    def share(self) -> float:
        return self.rows / self.sampled if self.sampled else 0.0


def _emails(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in EMAIL.finditer(text)]


def _ibans(text: str) -> list[tuple[int, int]]:
    from stdnum import iban

    return [m.span() for m in IBAN.finditer(text) if iban.is_valid(m.group())]


def _cards(text: str) -> list[tuple[int, int]]:
    from stdnum import luhn

    spans = []
    for match in CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if len(set(digits)) > 1 and luhn.is_valid(digits):
            spans.append(match.span())
    return spans


def _ssns(text: str) -> list[tuple[int, int]]:
    from stdnum.us import ssn

    return [m.span() for m in SSN.finditer(text) if ssn.is_valid(m.group())]


def _ips(text: str) -> list[tuple[int, int]]:
    spans = []
    for pattern in (IPV4, IPV6):
        for match in pattern.finditer(text):
            value = match.group()
            if pattern is IPV6 and "::" not in value and value.count(":") != 7:
                continue  # `10:00:00` is a time, not an address
            try:
                ipaddress.ip_address(value)
            except ValueError:
                continue
            spans.append(match.span())
    return spans


def _phones(text: str) -> list[tuple[int, int]]:
    import phonenumbers

    matcher = phonenumbers.PhoneNumberMatcher(
        text, PHONE_REGION, leniency=phonenumbers.Leniency.VALID
    )
    return [(m.start, m.end) for m in matcher]


# In this order: what one recogniser claims is blanked before the next looks (the digits of a
# card, an IBAN or an SSN would otherwise also read as a phone number).
RECOGNISERS: tuple[tuple[str, Callable[[str], list[tuple[int, int]]]], ...] = (
    ("email", _emails),
    ("iban", _ibans),
    ("card", _cards),
    ("us_ssn", _ssns),
    ("ip_address", _ips),
    ("phone", _phones),
)
KINDS = tuple(kind for kind, _ in RECOGNISERS)


def kinds_in(text: str) -> set[str]:
    """The kinds of personal data in one value (a whole value or free text)."""
    found = set()
    for kind, recognise in RECOGNISERS:
        spans = recognise(text)
        if spans:
            found.add(kind)
            for start, end in spans:
                text = text[:start] + " " * (end - start) + text[end:]
    return found


def text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that hold text (pandas `str`, or objects that are strings)."""
    return [
        str(name)
        for name, values in frame.items()
        if pd.api.types.is_string_dtype(values.dtype) or values.dtype == object
    ]


def sample_positions(rows: int, limit: int = SAMPLE_ROWS) -> np.ndarray:
    """Which rows are scanned: all of a small batch, else `limit` drawn with a fixed seed."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(SAMPLE_SEED).choice(rows, size=limit, replace=False))


def scan_column(name: str, values: pd.Series) -> list[Finding]:
    """Findings in one column's (sampled) values."""
    return scan_text(name, _as_arrow(values), len(values))


def scan_text(name: str, text: Any, sampled: int) -> list[Finding]:
    """Findings in a pyarrow array of text: pyarrow picks the candidates over the whole sample,
    and each distinct candidate is checked once, in Python."""
    import pyarrow.compute as compute

    candidates = compute.filter(text, compute.match_substring_regex(text, CANDIDATE))
    counts: dict[str, int] = {}
    for entry in compute.value_counts(candidates).to_pylist():
        if TIME_VALUE.match(entry["values"]):
            continue
        for kind in kinds_in(entry["values"]):
            counts[kind] = counts.get(kind, 0) + int(entry["counts"])
    return [Finding(name, kind, counts[kind], sampled) for kind in KINDS if kind in counts]


def _as_arrow(values: pd.Series) -> Any:
    import pyarrow as pa

    if getattr(values.dtype, "storage", None) == "pyarrow":
        return values.array.__arrow_array__()  # the column's own buffers
    # Python strings, or objects of any kind a reader left there: as text
    return pa.array([None if v is None or v != v else str(v) for v in values], pa.string())


def scan_numbers(name: str, values: pd.Series) -> list[Finding]:
    """Card numbers in an integer column (a CSV column of bare 16-digit numbers is read as
    integers): found only when most of its 13-to-19-digit values are valid card numbers, for a
    random id passes the Luhn check one time in ten."""
    numbers = values.dropna()
    long = numbers[(numbers >= 10**12) & (numbers < 10**19)]
    if long.empty:
        return []
    valid = sum(int(rows) for value, rows in long.value_counts().items() if _cards(str(value)))
    if valid < CARD_COLUMN_SHARE * len(long):
        return []
    return [Finding(name, "card", valid, len(values))]


def scan_frame(frame: pd.DataFrame, skip: Iterable[str] = ()) -> list[Finding]:
    """Personal data in the text columns of a frame (and card numbers in its integer columns),
    but `skip`, on a bounded row sample."""
    import pyarrow as pa

    skipped, text = set(skip), set(text_columns(frame))
    positions = sample_positions(len(frame))
    whole, indices = len(positions) == len(frame), pa.array(positions)
    findings: list[Finding] = []
    for name, values in frame.items():
        if str(name) in skipped:
            continue
        if str(name) in text:
            if getattr(values.dtype, "storage", None) == "pyarrow":  # a take, in pyarrow
                arrow = _as_arrow(values)
                sample = arrow if whole else arrow.take(indices)
            else:
                sample = _as_arrow(values.iloc[positions])
            findings += scan_text(str(name), sample, len(positions))
        elif pd.api.types.is_integer_dtype(values.dtype):
            numbers = values.iloc[positions]
            if len(numbers) and numbers.max() >= 10**12:
                findings += scan_numbers(str(name), numbers)
    return findings


def describe_column(findings: list[Finding]) -> str:
    """One column's findings in one line, with no value: `e-mail 5.0%, phone 1.2% of 20,000
    sampled rows`."""
    kinds = ", ".join(f"{f.kind} in {f.share:.1%}" for f in findings)
    return f"{kinds} of {findings[0].sampled:,} sampled rows"


PERSONAL_DATA_CHECK = "perennial_personal_data"


def personal_data(frame: pd.DataFrame, config: PerennialConfig) -> list[Outcome]:
    """The gate's check: one blocking outcome per undeclared column that holds personal data
    (naming the kinds and their shares, never a value), or one passing outcome for the table."""
    by_column: dict[str, list[Finding]] = {}
    for finding in scan_frame(frame, skip=config.privacy.columns):
        by_column.setdefault(finding.column, []).append(finding)
    if not by_column:
        return [Outcome(PERSONAL_DATA_CHECK, None, "critical", True, observed="none found")]
    return [
        Outcome(
            PERSONAL_DATA_CHECK,
            column,
            "critical",
            False,
            message=f"personal data: {describe_column(findings)}; declare the column in "
            "privacy.columns of the dataset YAML (drop or hash), or remove it at the source",
        )
        for column, findings in by_column.items()
    ]


class PersonalDataError(ConfigError):
    """Undeclared personal data where it must not go (a suite drafted from it); the message
    names each column, its kinds and their shares, never a value."""


def refuse_personal_data(frames: list[pd.DataFrame], config: PerennialConfig) -> None:
    """PersonalDataError, one line per column, if undeclared personal data is in `frames`."""
    failed = [
        o for frame in frames for o in personal_data(frame, config) if not o.success and o.column
    ]
    columns = {o.column: o for o in failed}  # the first batch's line per column
    if columns:
        lines = "".join(f"\n  {o.column}: {o.message}" for o in columns.values())
        raise PersonalDataError(
            f"{len(columns)} column(s) hold undeclared personal data; no suite drafted:{lines}"
        )


def withheld(outcomes: list[Outcome], personal: list[Outcome]) -> list[Outcome]:
    """The other checks' outcomes with no value of a column found to hold personal data: no
    examples or observed value on such a column, and no example rows at all (a row holds every
    column). These outcomes reach the reason file, the Prefect artifact, logs and alerts."""
    flagged = {o.column for o in personal if not o.success}
    if not flagged:
        return outcomes
    kept = []
    for outcome in outcomes:
        if outcome.column in flagged:
            outcome = replace(outcome, examples=[], observed=None, message=None)
        kept.append(replace(outcome, rows=[]))
    return kept


def holds_personal_data(outcomes: list[Outcome]) -> bool:
    return any(o.expectation == PERSONAL_DATA_CHECK and not o.success for o in outcomes)
