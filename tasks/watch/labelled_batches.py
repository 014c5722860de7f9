"""The labelled batches a replay walks: each batch's model inputs, labels and row times, read and
featurised once and shared by every policy and seed (`BatchData`), from the dataset's source or
from the validated batches in storage."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.batches import local_times
from tasks.core.config import PerennialConfig
from tasks.core.storage import open_storage
from tasks.data.features import features_and_label, newest_rows
from tasks.data.raw_files import read_raw
from tasks.data.source import extract_from_source


@dataclass
class BatchData:
    """Labelled rows of each batch, featurised once: x (model inputs), y, and row times."""

    ids: list[str]
    x: dict[str, pd.DataFrame]
    y: dict[str, pd.Series]
    times: dict[str, pd.Series]

    def rows(self, batches: list[str], config: PerennialConfig) -> int:
        """How many rows `training_rows` gives."""
        count = sum(len(self.y[b]) for b in batches)
        cap = config.split.max_train_rows
        return count if cap is None else min(count, cap)

    def training_rows(
        self, batches: list[str], config: PerennialConfig
    ) -> tuple[pd.DataFrame, pd.Series]:
        """The batches' rows, capped at `split.max_train_rows` as training caps them (newest)."""
        x = pd.concat([self.x[b] for b in batches], ignore_index=True)
        y = pd.concat([self.y[b] for b in batches], ignore_index=True)
        times = pd.concat([self.times[b] for b in batches], ignore_index=True)
        kept = newest_rows(times.to_frame(config.time.column), config).index
        return x.loc[kept].reset_index(drop=True), y.loc[kept].reset_index(drop=True)


def batch_data(config: PerennialConfig, frames: dict[str, pd.DataFrame]) -> BatchData:
    """`BatchData` of raw batch frames (batch id -> frame as landed), in batch order."""
    data = BatchData(sorted(frames), {}, {}, {})
    for batch in data.ids:
        frame = frames[batch]
        x, y = features_and_label(frame, config)
        data.x[batch], data.y[batch] = x.reset_index(drop=True), y.reset_index(drop=True)
        times = local_times(frame.loc[x.index, config.time.column], config.time)
        data.times[batch] = times.reset_index(drop=True)
    return data


def load_batches(config: PerennialConfig, batches: list[str]) -> BatchData:
    """The batches as ingestion reads them from the dataset's source (the flights gate drops no
    row, so these are the validated rows). A package source keeps a Parquet copy of its tables
    under `config.home`: give a scratch home to leave a real one untouched."""
    frames = {}
    for batch in batches:
        raw, ext, _ = extract_from_source(config, batch)
        frames[batch] = read_raw(raw, ext)
    return batch_data(config, frames)


@task(name="load-history", cache_policy=NO_CACHE)
def load_history_task(config: PerennialConfig, batches: list[str]) -> BatchData:
    """The validated batches (the gate passed them) as the replay reads them."""
    storage = open_storage(config.home)
    frames = {b: storage.read_parquet(catalog.key("validated", config, batch=b)) for b in batches}
    return batch_data(config, frames)
