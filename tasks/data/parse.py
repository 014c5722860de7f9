"""Reading and typing a raw batch: its bytes parsed into a frame (or the failed file check that
stops the gate before GE), and the frame the suite checks, its time column in UTC. The gate, the
background Data Docs worker and the suite's drafting all read a batch this way."""

from __future__ import annotations

import pandas as pd

from tasks.core.batches import parse_times
from tasks.core.config import PerennialConfig
from tasks.data.expectations import (
    FILE_CHECK,
    Outcome,
    shorten,
)
from tasks.data.filecheck import FILE_READABLE, FileCheckError, plain_bytes
from tasks.data.ingest import LandingRecord
from tasks.data.raw_files import raw_extension, read_raw, utc_times


def typed_frame(raw: pd.DataFrame, config: PerennialConfig) -> pd.DataFrame:
    """The frame the suite checks: the raw frame with its time column parsed (values without an
    offset read in `time.timezone`, see `parse_times`) and put in UTC, as the batch bounds
    are. Unparseable values become NaT, which the suite's not-null rule then reports. Only the
    suite sees it: the validated data keeps the time column as it arrived."""
    column = config.time.column
    if column not in raw.columns:
        return raw
    parsed = utc_times(raw[column])
    if parsed is None:
        parsed = parse_times(raw[column], config.time.timezone).dt.tz_convert("UTC")
    # GE vectorises only ns or tz-aware datetimes; `assign` copies no other column (pandas 3 CoW)
    return raw.assign(**{column: parsed.astype("datetime64[ns, UTC]")})


def parse_raw(
    data: bytes | None, record: LandingRecord, config: PerennialConfig
) -> tuple[pd.DataFrame | None, Outcome | None]:
    """The parsed frame (columns as the reader gives them), or the failed file check that stops
    the gate before GE."""
    ext = raw_extension(record.key)
    try:
        plain = plain_bytes(data, record.key, ext, config.validation)
        try:
            frame = read_raw(plain, ".parquet" if ext == ".parquet" else ".csv")
        except (ValueError, OSError) as exc:  # pandas' ParserError and pyarrow's are ValueErrors
            raise FileCheckError(
                FILE_READABLE,
                record.key,
                f"the reader failed: {shorten(exc, 300)}",
                "fix the file and land it as a revision (ingest --source)",
            ) from None
    except FileCheckError as exc:
        return None, Outcome(exc.check, None, "critical", False, error=str(exc), stage=FILE_CHECK)
    return frame, None
