"""The gate's verdict on a batch (`GateResult`: each expectation's outcome, and whether a critical
one failed), and what is made of it: the record stored beside the batch, the table a person
reads in the Prefect UI, the ingestion flow's summary, and the refusal of a run that would use a
quarantined batch."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.core.config import PerennialConfig
from tasks.data.expectations import Outcome, shorten


@dataclass
class GateResult:
    batch: str
    passed: bool
    sha256: str
    rows: int
    suite: str
    outcomes: list[Outcome]
    validated_key: str | None = None
    reason_key: str | None = None
    revision: int = 1
    raw_key: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per gate step
    gate: str = ""  # fingerprint of the gate the batch was validated under
    engine: str = (
        ""  # validate.NATIVE or validate.GREAT_EXPECTATIONS (a suite the native checks cannot read)
    )

    def blocking_failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity == "critical"]

    def warnings(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.success and o.severity != "critical"]

    def headline(self) -> str:
        """E.g. `1 of 84 checks failed: expect_column_values_to_be_between on distance`."""
        total, failed, warned = len(self.outcomes), self.blocking_failures(), self.warnings()
        if failed:
            text = f"{len(failed)} of {total} checks failed: {_checks(failed)}"
            return text + (f" ({len(warned)} warnings)" if warned else "")
        text = f"{total - len(warned)} of {total} checks passed"
        return text + (f", {len(warned)} warned: {_checks(warned)}" if warned else "")


def _checks(outcomes: list[Outcome]) -> str:
    """Failed checks, compactly: each rule once, with the columns it failed on."""
    columns: dict[str, list[str]] = {}
    for outcome in outcomes:
        columns.setdefault(outcome.expectation, [])
        if outcome.column and outcome.column not in columns[outcome.expectation]:
            columns[outcome.expectation].append(outcome.column)
    text = "; ".join(
        f"{rule} on {', '.join(named)}" if named else rule for rule, named in columns.items()
    )
    return shorten(text, 400)


def stored_verdict(result: GateResult) -> dict[str, Any]:
    """What is stored of a verdict: beside a validated batch (its summary, which spares the
    next run the gate), and in a quarantine reason."""
    return {
        "batch": result.batch,
        "revision": result.revision,
        "raw": result.raw_key,
        "sha256": result.sha256,
        "rows": result.rows,
        "suite": result.suite,
        "gate": result.gate,
        "engine": result.engine,
        "outcomes": [asdict(o) for o in result.outcomes],
    }


def report_markdown(config: PerennialConfig, result: GateResult) -> str:
    """A table a person reads in the Prefect UI: failures first, then warnings, then passes."""
    verdict = "passed" if result.passed else "**FAILED** (quarantined)"
    lines = [
        f"# Gate {config.dataset} {result.batch} (revision {result.revision}): {verdict}",
        "",
        f"{result.rows:,} rows, suite `{result.suite}`, raw `{result.raw_key}`"
        + (f", reason `{result.reason_key}`" if result.reason_key else ""),
        "",
        "| expectation | column | severity | result | examples |",
        "| --- | --- | --- | --- | --- |",
    ]
    order = {False: 0, True: 1}
    ranked = sorted(result.outcomes, key=lambda o: (order[o.success], o.severity != "critical"))
    for o in ranked:
        status = "pass" if o.success else ("FAIL" if o.severity == "critical" else "warn")
        detail = o.error or (
            f"{o.unexpected_count} unexpected ({o.unexpected_percent:.2f}%)"
            if o.unexpected_count
            else (f"observed {shorten(o.observed, 60)}" if o.observed is not None else "")
        )
        examples = shorten(o.examples, 80) if o.examples else ""
        cells = [o.expectation, o.column or "", o.severity, f"{status} {detail}".strip(), examples]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


@dataclass
class BatchSummary:
    """What the ingestion flows report of a batch: how it landed (`landed`, `revised`,
    `unchanged`, or `refused`) and the gate's verdict (`passed`, `failed`, or `skipped`)."""

    dataset: str
    batch: str
    landing: str
    gate: str


@dataclass
class GatedBatch(BatchSummary):
    """A batch the gate judged: the blocking failures and the warnings, one line each, and
    where the reason of a quarantined batch is (None when it passed)."""

    headline: str
    rows: int
    failures: list[str]
    warnings: list[str]
    reason_key: str | None


def gate_summary(
    config: PerennialConfig, batch: str, landing: str, result: GateResult | None
) -> BatchSummary:
    """What the ingestion flow reports: the landing status and the gate's verdict (`skipped`
    without a gate result)."""
    if result is None:
        return BatchSummary(config.dataset, batch, landing, "skipped")
    return GatedBatch(
        dataset=config.dataset,
        batch=batch,
        landing=landing,
        gate="passed" if result.passed else "failed",
        headline=result.headline(),
        rows=result.rows,
        failures=[o.describe() for o in result.blocking_failures()],
        warnings=[o.describe() for o in result.warnings()],
        reason_key=result.reason_key,
    )


def refusal(results: dict[str, GateResult], use: str) -> str | None:
    """Why `use` (e.g. "training") must not go on with these gate results, or None."""
    failed = [r for r in results.values() if not r.passed]
    if not failed:
        return None
    details = "; ".join(f"{r.batch}: {r.headline()} (see {r.reason_key})" for r in failed)
    return f"{use} refused: quarantined batch(es): {details}"
