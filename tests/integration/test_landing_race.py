"""Write-once landing under a race: two OS processes land different bytes for the same batch at
the same moment, round after round. Exactly one lands, the other is refused with a clear reason,
and the `.landed.json` record always describes the bytes on disk."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from tasks.batches import expand_range
from tasks.config import load_config
from tests.integration.test_second_dataset import CONFIG

pytestmark = pytest.mark.integration

ROUNDS = 40
BATCHES = "2020-W01..2020-W40"


def land_in_rounds(config_path: str, who: int, barrier: Any, results: Any) -> None:
    """One racer: for each batch, wait for the other racer, then land this racer's bytes."""
    from tasks.ingest import IngestError, land_batch
    from tasks.storage import open_storage

    config = load_config(config_path)
    storage = open_storage(config.home)
    for batch in expand_range(BATCHES, config.time):
        data = f"racer,batch\n{who},{batch}\n".encode()
        barrier.wait(timeout=120)
        try:
            outcome = land_batch(storage, config, batch, data, ".csv", f"racer {who}").status
        except IngestError as exc:
            outcome = f"refused: {exc}"
        except Exception as exc:  # anything else is a bug the test reports
            outcome = f"error: {exc!r}"
        results.put((batch, who, outcome))


def test_two_processes_landing_one_batch_one_wins_and_the_record_matches_the_disk(
    tmp_path: Path,
) -> None:
    config_path = tmp_path / "sensors.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    batches = expand_range(BATCHES, config.time)
    assert len(batches) == ROUNDS

    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no state shared by fork
    barrier, results = spawn.Barrier(2), spawn.Queue()
    racers = [
        spawn.Process(target=land_in_rounds, args=(str(config_path), who, barrier, results))
        for who in (1, 2)
    ]
    for racer in racers:
        racer.start()
    outcomes: dict[str, dict[int, str]] = {}
    for _ in range(2 * ROUNDS):
        batch, who, outcome = results.get(timeout=300)
        outcomes.setdefault(batch, {})[who] = outcome
    for racer in racers:
        racer.join(timeout=60)
        assert racer.exitcode == 0

    landing = Path(config.home) / "landing" / "sensors"
    for batch in batches:
        both = sorted(outcomes[batch].values())
        assert both[0] == "landed", (batch, both)
        assert both[1].startswith("refused: batch"), (batch, both)
        assert "different data" in both[1] or "already landed" in both[1], (batch, both)
        record = json.loads((landing / f"{batch}.landed.json").read_text())
        on_disk = (landing / f"{batch}.csv").read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == record["sha256"], batch
        assert record["source"] == f"racer {on_disk.decode().splitlines()[1][0]}", batch
    # nothing left behind by the losers
    assert not [p.name for p in landing.iterdir() if p.name.startswith(".")]
