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

from tasks.core.batches import expand_range
from tasks.core.config import load_config
from tests.integration.test_s3_storage import aws, bucket, moto_url, s3_client  # noqa: F401
from tests.integration.test_second_dataset import CONFIG

pytestmark = pytest.mark.integration

ROUNDS = 40
BATCHES = "2020-W01..2020-W40"


def land_in_rounds(config_path: str, batches: str, who: int, barrier: Any, results: Any) -> None:
    """One racer: for each batch, wait for the other racer, then land this racer's bytes."""
    from tasks.core.storage import open_storage
    from tasks.data.ingest import land_batch
    from tasks.data.raw_files import IngestError

    config = load_config(config_path)
    storage = open_storage(config.home)
    for batch in expand_range(batches, config.time):
        data = f"racer,batch\n{who},{batch}\n".encode()
        barrier.wait(timeout=120)
        try:
            outcome = land_batch(storage, config, batch, data, ".csv", f"racer {who}").status
        except IngestError as exc:
            outcome = f"refused: {exc}"
        except Exception as exc:  # anything else is a bug the test reports
            outcome = f"error: {exc!r}"
        results.put((batch, who, outcome))


def race(config_path: Path, spec: str) -> dict[str, dict[int, str]]:
    """Two spawned racers over the batches of `spec`; each batch's two outcomes."""
    batches = expand_range(spec, load_config(config_path).time)
    spawn = multiprocessing.get_context("spawn")  # fresh interpreters: no state shared by fork
    barrier, results = spawn.Barrier(2), spawn.Queue()
    racers = [
        spawn.Process(target=land_in_rounds, args=(str(config_path), spec, who, barrier, results))
        for who in (1, 2)
    ]
    for racer in racers:
        racer.start()
    outcomes: dict[str, dict[int, str]] = {}
    for _ in range(2 * len(batches)):
        batch, who, outcome = results.get(timeout=300)
        outcomes.setdefault(batch, {})[who] = outcome
    for racer in racers:
        racer.join(timeout=60)
        assert racer.exitcode == 0
    return outcomes


def one_landed_one_refused(batch: str, outcomes: dict[int, str]) -> None:
    both = sorted(outcomes.values())
    assert both[0] == "landed", (batch, both)
    assert both[1].startswith("refused: batch"), (batch, both)
    assert "different data" in both[1] or "already landed" in both[1], (batch, both)


def test_two_processes_landing_one_batch_one_wins_and_the_record_matches_the_disk(
    tmp_path: Path,
) -> None:
    config_path = tmp_path / "sensors.yaml"
    config_path.write_text(CONFIG)
    config = load_config(config_path)
    batches = expand_range(BATCHES, config.time)
    assert len(batches) == ROUNDS
    outcomes = race(config_path, BATCHES)

    landing = Path(config.home) / "landing" / "sensors"
    for batch in batches:
        one_landed_one_refused(batch, outcomes[batch])
        record = json.loads((landing / f"{batch}.landed.json").read_text())
        on_disk = (landing / f"{batch}.csv").read_bytes()
        assert hashlib.sha256(on_disk).hexdigest() == record["sha256"], batch
        assert record["source"] == f"racer {on_disk.decode().splitlines()[1][0]}", batch
    # nothing left behind by the losers
    assert not [p.name for p in landing.iterdir() if p.name.startswith(".")]


def test_the_same_race_on_s3_lands_once_with_a_matching_record(
    tmp_path: Path,
    bucket: str,  # noqa: F811
) -> None:
    # S3 is write-once by conditional puts (`If-None-Match: *`, which moto enforces too).
    from tasks.core.storage import content_hash, open_storage

    home = f"s3://{bucket}/race"
    config_path = tmp_path / "sensors.yaml"
    config_path.write_text(
        CONFIG.replace(
            "home: state",
            f"home: {home}\nmlflow_uri: sqlite:///{tmp_path}/mlflow.db\n"
            f"optuna_storage: journal:{tmp_path}/optuna.journal",
        )
    )
    outcomes = race(config_path, "2021-W01..2021-W10")
    storage = open_storage(home)
    for batch, pair in outcomes.items():
        one_landed_one_refused(batch, pair)
        record = storage.read_json(f"landing/sensors/{batch}.landed.json")
        on_s3 = storage.read_bytes(f"landing/sensors/{batch}.csv")
        assert content_hash(on_s3) == record["sha256"], batch
