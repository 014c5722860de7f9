"""The validation gate's settings (`validation:`): the suite, the key columns, severities, the
margins against the reference batches, the file limits and the Data Docs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from tasks.core.config_section import Section


class ValidationConfig(Section):
    suite: str = Field(description="Name of the GE expectation suite in the GE project.")
    gx_root: Path = Field(Path("great_expectations"), description="Folder of the GE file context.")
    min_rows: int = Field(1, ge=0, description="Fewer rows than this in a batch fails the gate.")
    # Not `keys`: Prefect reads pydantic task inputs with dict(model), which calls .keys().
    key_columns: list[str] = Field(
        default_factory=list,
        description="Columns that identify a row: drafted as non-null and unique together.",
    )
    severity: dict[str, Literal["critical", "warning", "info"]] = Field(
        default_factory=dict,
        description="Severity overrides applied at gate time, keyed by expectation type "
        "(e.g. 'expect_column_values_to_be_in_set') or 'type:column' (the more specific wins).",
    )
    seasonal: list[str] = Field(
        default_factory=list,
        description="Columns whose centre moves with the seasons (weather, say): a median outside "
        "the reference's only warns; their relations to other columns still gate.",
    )
    reference_margin: float = Field(
        1.0,
        gt=0,
        description="Scales every margin by which a batch may leave the reference batches' own "
        "range (null share, far values, medians, relations, label rate) before it fails.",
    )
    max_file_mb: float = Field(
        1024.0,
        gt=0,
        description="Larger raw files (or their decompressed content) fail the file checks.",
    )
    max_line_bytes: int = Field(
        100_000, ge=64, description="A longer line means a broken file (e.g. lost newlines)."
    )
    data_docs: bool = Field(True, description="Build GE Data Docs under PERENNIAL_HOME/data_docs.")
    data_docs_keep: int = Field(
        50, ge=1, description="Validation pages kept in the Data Docs (older ones are pruned)."
    )
