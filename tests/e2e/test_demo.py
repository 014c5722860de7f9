"""`perennial demo`, shortened to five months: the first champion on three, then a row per month
(land, gate, champion scoring, retrain, decision), the table, and why the champion was kept
where it was."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core import catalog
from tasks.core.config import load_config
from tasks.registry.client import CHAMPION, version_by_alias
from tests.conftest import FLIGHTS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def demo_artifact() -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["flights-demo"]))
        )
    assert found
    return str(found[0].data)


def row_scorers(rows: list[list[str]]) -> list[str]:
    """The champion version named in each row's "scored by" cell."""
    return [row[3].split(" ")[0] for row in rows]


def test_the_demo_replays_months_and_says_why_a_champion_stayed(
    prefect_server: None, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No challenger can gain a whole AUC point: after the first model, the champion stays.
    # (Without refits: a refit challenger needs only to be no worse than its champion.)
    monkeypatch.setenv("PERENNIAL_PROMOTION__MIN_IMPROVEMENT", "1.0")
    monkeypatch.setenv("PERENNIAL_SPLIT__REFIT_ON_HOLDOUT", "false")
    result = CliRunner().invoke(
        app, ["demo", "--first", "2013-01..2013-03", "--last", "2013-05", "--trials", "2"]
    )
    assert result.exit_code == 0, result.output
    lines = demo_artifact().splitlines()
    rows = [line.strip("| ").split(" | ") for line in lines if line.startswith("| 2013-")]
    assert [row[0] for row in rows] == ["2013-03", "2013-04", "2013-05"]
    assert all(row[2] == "passed" for row in rows)
    # Each later month is scored by the champion before it is used to retrain.
    assert row_scorers(rows) == ["-", "v1", "v1"]
    config = load_config(FLIGHTS)
    for month in ("2013-04", "2013-05"):
        scored = pd.read_parquet(home / catalog.key("predictions", config, batch=month))
        assert set(scored["champion_version"]) == {"1"}
        assert len(scored) == int(next(row[1] for row in rows if row[0] == month))
    assert not (home / catalog.key("predictions", config, batch="2013-03")).exists()
    assert [row[6] for row in rows] == ["yes", "no", "no"]  # the first passes sanity + floor
    champion = version_by_alias(config, CHAMPION)
    assert champion is not None and champion.version == "1"
    assert [row[7] for row in rows] == ["v1", "v1", "v1"]
    # The monitor judged v1 on each later month, on its labels, and recorded what it saw.
    assert rows[0][8] == "-" and all(row[8] in ("ok", "warn", "alert") for row in rows[1:])
    for month in ("2013-04", "2013-05"):
        assert (home / catalog.key("batch_record", config, batch=month, version="1")).exists()
    kept = [line for line in lines if line.startswith("- 2013-")]
    assert [line.split(":")[0] for line in kept] == ["- 2013-04", "- 2013-05"]
    assert all("< required +1.0" in line for line in kept)  # each names the failed check
    for month in ("2013-01", "2013-02", "2013-03", "2013-04", "2013-05"):
        assert (home / "validated" / "flights" / f"{month}.parquet").exists()
