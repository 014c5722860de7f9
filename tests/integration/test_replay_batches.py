"""Replay reads the real flights batches as ingestion reads them: labelled rows only, the
config's feature columns, times in the dataset's time zone (the policies themselves, on
synthetic batches: tests/unit/test_replay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.watch.labelled_batches import load_batches
from tests.conftest import FLIGHTS


@pytest.mark.slow
def test_real_batches_are_read_as_ingestion_reads_them(tmp_path: Path) -> None:
    config = load_config(FLIGHTS).model_copy(update={"home": str(tmp_path)})
    data = load_batches(config, ["2013-02", "2013-01"])
    assert data.ids == ["2013-01", "2013-02"]
    # January 2013 in New York: 27,004 flights, of which 606 have no arrival delay (no label).
    assert len(data.y["2013-01"]) == 26398
    assert list(data.x["2013-01"].columns) == config.features.columns
    assert str(data.times["2013-01"].dt.tz) == "America/New_York"
