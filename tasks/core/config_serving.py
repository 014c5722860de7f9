"""Real-time serving (`serve:`): the challenger's share, alias polling, request limits and the
sampling of live traffic for the monitor."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.core.config_section import Section


class ServeConfig(Section):
    """`perennial serve`: real-time scoring of the champion (and, optionally, the challenger)."""

    challenger_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of requests scored by the challenger (sticky by request key).",
    )
    poll_seconds: float = Field(
        10.0, gt=0, description="How often the registry aliases are checked for a new version."
    )
    threshold: float = Field(0.5, ge=0, le=1, description="Score from which the label is 1.")
    max_rows: int = Field(1000, ge=1, description="Most rows one request may carry (more: 413).")
    max_body_kb: int = Field(
        1024,
        ge=1,
        description="Largest request body in KiB; a bigger one is refused (413) before parsing.",
    )
    live_sample_rate: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of scored rows written to storage as live traffic (for the monitor).",
    )
    live_period: Literal["month", "week", "day"] | None = Field(
        None, description="Period of a live batch (default: the dataset's time.batch_period)."
    )
    live_flush_seconds: float = Field(
        60.0, gt=0, description="How often sampled rows are written out (and at shutdown)."
    )
    live_flush_rows: int = Field(
        10_000, ge=1, description="Sampled rows that trigger a write before the next flush."
    )
    docs: bool = Field(
        False,
        description="Serve /docs and /openapi.json (behind the token, when one is set).",
    )
