"""The dataset's source (`source:` in its YAML): the batch `ingest` lands when it is given no
file. `files`: a file per batch, from a path template. `package_tables`: the rows of the batch in a
table shipped by a Python package, with its joins; a local home keeps a Parquet copy of the
tables, split by batch, so that each batch reads only its own rows."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.core import catalog
from tasks.core.batches import batch_ids, check_batch
from tasks.core.config import PerennialConfig
from tasks.core.config_dataset import SourceConfig, TimeConfig
from tasks.core.private_state import private_folder
from tasks.core.storage import content_hash
from tasks.data.raw_files import IngestError, csv_bytes, raw_extension, utc_times


def extract_from_source(config: PerennialConfig, batch: str) -> tuple[bytes, str, str]:
    """Bytes, extension and description of a batch taken from the config's source."""
    check_batch(batch, config.time)  # before the id goes into a path template or a filter
    source = config.source
    if source.kind == "files":
        path = Path(str(source.path_template).format(batch=batch))
        return read_source_file(path), raw_extension(path.name), str(path)
    rows = _package_batch(
        source.model_dump_json(), config.time.model_dump_json(), source_cache(config), batch
    )
    if rows.empty:
        raise IngestError(f"{source.package}: no rows for batch {batch}")
    # CSV text is deterministic, so re-extracting a batch gives identical bytes (and hash).
    return csv_bytes(rows), ".csv", f"package:{source.package}/{source.table}"


def read_source_file(path: Path) -> bytes:
    if not path.is_file():
        raise IngestError(f"{path}: file not found")
    return path.read_bytes()


def source_cache(config: PerennialConfig) -> str:
    """Where a local home keeps its Parquet copies of package tables ("" for an S3 home)."""
    if config.home.startswith("s3://"):
        return ""
    return str(Path(config.home) / catalog.key("source_cache", config))


def _package_files(source: SourceConfig) -> tuple[Path, list[Path]]:
    """The package's data folder and the files of the main table and its joins."""
    spec = importlib.util.find_spec(str(source.package))
    if spec is None or not spec.submodule_search_locations:
        raise IngestError(f"source package {source.package!r} is not installed")
    folder = Path(next(iter(spec.submodule_search_locations))) / source.directory
    return folder, [folder / str(source.table), *(folder / join.table for join in source.joins)]


def _copy_name(*configs: str) -> str:
    """Name of a cached copy of the package tables made under `configs` (JSON texts): the
    package files' sizes and times are in it, so a new package version makes a new copy."""
    source = SourceConfig.model_validate_json(configs[0])
    files = [f for f in _package_files(source)[1] if f.is_file()]
    stats = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return content_hash(json.dumps([*configs, stats, pd.__version__]).encode())[:20]


@lru_cache(maxsize=4)
def _read_package_tables(source_json: str, cache: str = "") -> pd.DataFrame:
    """The main table with its joins, read once per process (it is the same for every batch).
    With `cache` (a folder), read from a Parquet copy made on first use: parsing the package's
    CSV files took 0.8 s of each `ingest`, the copy reads in a fraction of that."""
    source = SourceConfig.model_validate_json(source_json)
    folder, files = _package_files(source)
    copy = None
    if cache:
        copy = Path(cache) / f"{_copy_name(source_json)}.parquet"
        with contextlib.suppress(OSError, ValueError):  # unreadable: read the package again
            return pd.read_parquet(copy)
    frame = pd.read_csv(files[0])
    for join in source.joins:
        right = pd.read_csv(folder / join.table, usecols=[*join.join_on, *join.columns])
        right = right.drop_duplicates(join.join_on).rename(columns=join.columns)
        frame = frame.merge(right, on=join.join_on, how="left", validate="many_to_one")
    if copy is not None:
        with contextlib.suppress(OSError):  # a cache: failing to write it changes nothing
            private_folder(copy.parent)  # under PERENNIAL_HOME: the user's only
            partial = copy.with_suffix(f".{os.getpid()}.tmp")
            frame.to_parquet(partial, index=False)
            partial.replace(copy)  # whole or absent, even with two writers at once
    return frame


def _package_batch(source_json: str, time_json: str, cache: str, batch: str) -> pd.DataFrame:
    """The rows of `batch` (a checked id) in the package table, in the table's order.

    With `cache`, from a copy split by batch (a folder of one Parquet file per batch, made on
    first use), so that one batch reads only its own rows: reading the whole table and finding
    the batch of each of its rows took 0.4 s of each `ingest`. The folder appears whole or not
    at all; in it, a missing file is a batch with no rows; an unreadable one is ignored."""
    split = Path(cache) / _copy_name(source_json, time_json) if cache else None
    if split is not None and split.is_dir():
        part = split / f"{batch}.parquet"
        if not part.exists():  # no row of the table is in this batch
            return _read_package_tables(source_json, cache).iloc[:0]
        with contextlib.suppress(OSError, ValueError):  # unreadable: from the whole table
            return pd.read_parquet(part)
    frame = _read_package_tables(source_json, cache)
    ids = _package_batch_ids(source_json, time_json, cache)
    if split is not None:
        with contextlib.suppress(OSError):  # a cache: failing to write it changes nothing
            _write_split(frame, ids, split)
    return frame[ids == batch]


def _write_split(frame: pd.DataFrame, ids: np.ndarray, split: Path) -> None:
    partial = split.with_name(f"{split.name}.{os.getpid()}.tmp")
    private_folder(partial)
    try:
        for batch in pd.unique(ids[pd.notna(ids)]):
            frame[ids == batch].to_parquet(partial / f"{batch}.parquet", index=False)
        partial.rename(split)  # refused if another writer's folder is there: theirs stays
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # left only when the rename failed


@lru_cache(maxsize=4)
def _package_batch_ids(source_json: str, time_json: str, cache: str = "") -> np.ndarray:
    """The batch id of each row of the package's table, computed once per process (a training
    on twelve months extracts twelve batches from the same table)."""
    time = TimeConfig.model_validate_json(time_json)
    times = _read_package_tables(source_json, cache)[time.column]
    parsed = utc_times(times)  # the fast path of `parse_times`, which batch_ids would call
    return batch_ids(times if parsed is None else parsed, time).to_numpy()
