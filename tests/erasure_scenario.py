"""A small dataset about made-up customers, stored in every copy `perennial forget` must reach:
two batches landed under `privacy.columns` (e-mail dropped, customer id hashed), the first batch
quarantined once and landed again as a revision, each batch validated and scored, and live
samples kept. Built with the real storage and landing code, locally or on S3; the gate's own
output is written as it writes it (a Parquet copy of the typed rows, a summary, a reason file).
Nobody in it is real: ids and e-mails come from a seeded generator."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from tasks.core import catalog
from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.data.ingest import land_batch
from tasks.data.privacy import hash_value, privacy_key
from tasks.data.raw_files import read_raw
from tests.conftest import FLIGHTS

SUBJECT = "C-0007"
BATCHES = ("2013-01", "2013-02")
ROWS = 40  # per batch; the subject has rows 3, 17 and 31 of each


def people_config(home: str) -> PerennialConfig:
    """The flights config pointed at `home`, declaring the customers' personal columns."""
    config = load_config(FLIGHTS)
    config.home = home
    config.privacy.columns = {"email": "drop", "customer_id": "hash"}
    return config


def arrived(batch: str, seed: int) -> bytes:
    """A batch as a customer system would send it (CSV, personal columns included)."""
    rng = np.random.default_rng(seed)
    ids = [f"C-{int(i):04d}" for i in rng.integers(100, 999, ROWS)]
    for row in (3, 17, 31):
        ids[row] = SUBJECT
    frame = pd.DataFrame(
        {
            "time_hour": [f"{batch}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z" for i in range(ROWS)],
            "customer_id": ids,
            "email": [f"{c.lower()}@example.org" for c in ids],
            "amount": np.round(rng.gamma(2.0, 30.0, ROWS), 2),
        }
    )
    return frame.to_csv(index=False).encode()


@dataclass
class Stored:
    config: PerennialConfig
    hashed_subject: str


def store_everything(storage: Storage, config: PerennialConfig) -> Stored:
    """Every copy, as the pipeline leaves it."""
    first, second = BATCHES
    # The first batch: landed, quarantined (its copy and reason kept), landed again as r2.
    record = land_batch(storage, config, first, arrived(first, 1), ".csv", "test")
    storage.write_bytes(
        catalog.key("quarantined_file", config, file=record.key.rsplit("/", 1)[-1]),
        storage.read_bytes(record.key),
    )
    storage.write_json(
        catalog.quarantine_reason_key(config, first), {"sha256": record.sha256, "revision": 1}
    )
    land_batch(storage, config, first, arrived(first, 2), ".csv", "test")
    land_batch(storage, config, second, arrived(second, 3), ".csv", "test")
    for batch in BATCHES:
        from tasks.data.ingest import landed_record

        newest = landed_record(storage, config, batch)
        assert newest is not None
        frame = read_raw(storage.read_bytes(newest.key), ".csv")
        storage.write_parquet(catalog.key("validated", config, batch=batch), frame)
        storage.write_json(
            catalog.key("validated_summary", config, batch=batch),
            {"sha256": newest.sha256, "rows": len(frame), "revision": newest.revision},
        )
        scores = pd.DataFrame(
            {
                "row": np.arange(len(frame)),
                "time_hour": frame["time_hour"],
                "champion_score": np.linspace(0, 1, len(frame)),
            }
        )
        storage.write_parquet(catalog.key("predictions", config, batch=batch), scores)
        live = frame[["time_hour", "customer_id", "amount"]].iloc[
            1::2
        ]  # odd rows: the subject's too
        storage.write_parquet(catalog.key("live_part", config, batch=batch, part="p1"), live)
    return Stored(config, hash_value(privacy_key(config), SUBJECT))


def frame_of(storage: Storage, key: str) -> pd.DataFrame:
    data = storage.read_bytes(key)
    return pd.read_parquet(io.BytesIO(data)) if key.endswith(".parquet") else read_raw(data, ".csv")
