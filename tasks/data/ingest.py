"""Ingest: land a batch, as it arrived, as an immutable file under `landing/<dataset>/`.

Landing is idempotent: the same bytes twice is a no-op; different bytes for a batch already
landed are refused (raw data is never overwritten), unless the gate quarantined the batch: then
the corrected file becomes a new revision (`<batch>.r2.csv`, ...) beside the first, which stays.
Each landed file has a record (`landing/<dataset>/<batch>.landed.json`, `<batch>.r2.landed.json`,
...) with its content hash, size, source and time; `landed_record` gives the newest.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.core import catalog
from tasks.core.batches import batch_ids, check_batch, expand_range, period_bounds
from tasks.core.catalog import LANDED_SUFFIX, landing_folder, landing_key, quarantine_reason_key
from tasks.core.config import PerennialConfig
from tasks.core.config_dataset import SourceConfig, TimeConfig
from tasks.core.private_state import private_folder
from tasks.core.storage import ImmutableKeyError, Storage, content_hash

RAW_FORMATS = (".csv", ".csv.gz", ".csv.zip", ".parquet")


class IngestError(ValueError):
    """A batch that cannot be landed; the message says which file and why."""


class NotLandedError(IngestError):
    """A batch (or any batch at all) was asked for before it was landed."""


@dataclass(frozen=True)
class LandingRecord:
    batch: str
    key: str
    sha256: str
    size_bytes: int
    source: str
    landed_at: str
    status: str  # "landed", "revised" (a new revision of a quarantined batch) or "unchanged"
    revision: int = 1


def raw_extension(name: str) -> str:
    """The raw-format extension of a file name, or IngestError naming what is accepted."""
    for ext in RAW_FORMATS:
        if name.lower().endswith(ext):
            return ext
    raise IngestError(f"{name}: unsupported file type; expected one of {', '.join(RAW_FORMATS)}")


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


SPECIAL = re.compile(r'[,"\r\n]')  # what the csv module would quote


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """`frame.to_csv(index=False)`, byte for byte (landed bytes are hashed and immutable, so
    re-extracting a landed batch must give the same ones), twice as fast for plain columns."""
    text = _plain_csv(frame)
    return (frame.to_csv(index=False) if text is None else text).encode()


def _plain_csv(frame: pd.DataFrame) -> str | None:
    """The CSV text pandas writes, for frames of numpy ints and floats and of text that needs
    no quoting; None for anything else. pandas formats a float as Python's `repr` (shortest
    round trip) and a missing value as an empty field; its csv writer costs half of its time."""
    names = [str(c) for c in frame.columns]
    # One column: the csv module quotes an empty field alone on its line; names: as cells.
    if len(names) < 2 or len(set(names)) < len(names) or any(SPECIAL.search(n) for n in names):
        return None
    columns: list[list[str]] = []
    for _, values in frame.items():
        kind = values.dtype.kind if isinstance(values.dtype, np.dtype) else None
        if values.dtype == np.float64:  # float32 prints its own shorter digits
            columns.append(["" if v != v else repr(v) for v in values.to_numpy().tolist()])
        elif kind in ("i", "u"):
            columns.append(list(map(str, values.to_numpy().tolist())))
        elif pd.api.types.is_string_dtype(values.dtype):
            cells = values.to_numpy(dtype=object, na_value="").tolist()
            if not all(type(v) is str for v in cells) or SPECIAL.search("".join(cells)):
                return None
            columns.append(cells)
        else:
            return None
    end = os.linesep  # pandas' default line terminator
    return (
        ",".join(names) + end + "".join(",".join(row) + end for row in zip(*columns, strict=True))
    )


@lru_cache(maxsize=4)
def _package_batch_ids(source_json: str, time_json: str, cache: str = "") -> np.ndarray:
    """The batch id of each row of the package's table, computed once per process (a training
    on twelve months extracts twelve batches from the same table)."""
    time = TimeConfig.model_validate_json(time_json)
    times = _read_package_tables(source_json, cache)[time.column]
    parsed = utc_times(times)  # the fast path of `parse_times`, which batch_ids would call
    return batch_ids(times if parsed is None else parsed, time).to_numpy()


def read_source_file(path: Path) -> bytes:
    if not path.is_file():
        raise IngestError(f"{path}: file not found")
    return path.read_bytes()


def landed_history(storage: Storage, config: PerennialConfig, batch: str) -> list[LandingRecord]:
    """Every landed revision of a batch, oldest first (empty if never landed)."""
    history: list[LandingRecord] = []
    while storage.exists(key := landing_key(config, batch, LANDED_SUFFIX, len(history) + 1)):
        history.append(LandingRecord(**{**storage.read_json(key), "status": "unchanged"}))
    return history


def landed_record(storage: Storage, config: PerennialConfig, batch: str) -> LandingRecord | None:
    """The newest landed revision of a batch, or None."""
    history = landed_history(storage, config, batch)
    return history[-1] if history else None


def is_quarantined(storage: Storage, config: PerennialConfig, record: LandingRecord) -> bool:
    """Whether the gate quarantined this very revision (its hash is in the reason file)."""
    key = quarantine_reason_key(config, record.batch)
    return storage.exists(key) and storage.read_json(key).get("sha256") == record.sha256


def land_batch(
    storage: Storage, config: PerennialConfig, batch: str, data: bytes, ext: str, source: str
) -> LandingRecord:
    """Land raw bytes for a batch: immutable, idempotent, refused when the batch differs
    unless the batch is quarantined (then the data lands as the next revision)."""
    period_bounds(batch, config.time)  # rejects a malformed batch id before anything is written
    digest = content_hash(data)
    existing = landed_record(storage, config, batch)
    revision = 1
    if existing is not None:
        if existing.sha256 == digest:
            return existing
        if not is_quarantined(storage, config, existing):
            raise IngestError(
                f"batch {batch} of {config.dataset} is already landed as {existing.key} "
                f"(sha256 {existing.sha256[:12]}) and this data differs (sha256 {digest[:12]}); "
                "raw batches are never overwritten, and this batch is not quarantined, so it "
                "takes no corrected revision; land the new data under another batch id"
            )
        revision = existing.revision + 1
    record = LandingRecord(
        batch=batch,
        key=landing_key(config, batch, ext, revision),
        sha256=digest,
        size_bytes=len(data),
        source=source,
        landed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        status="landed" if revision == 1 else "revised",
        revision=revision,
    )
    fields = {k: v for k, v in asdict(record).items() if k != "status"}
    record_key = landing_key(config, batch, LANDED_SUFFIX, revision)
    try:
        # Both writes are write-once in the storage itself (a hard link locally, a conditional
        # put on S3): of two ingests racing past the check above, exactly one lands this
        # revision, and its record is the one that describes the bytes on disk.
        storage.write_bytes(record.key, data, immutable=True)
        storage.write_json(record_key, fields, immutable=True)
    except ImmutableKeyError:
        winner = storage.read_json(record_key) if storage.exists(record_key) else None
        if winner is not None and winner.get("sha256") == digest:  # same bytes: idempotent
            return LandingRecord(**{**winner, "status": "unchanged"})
        raise IngestError(
            f"batch {batch} of {config.dataset}: another ingest landed different data as "
            f"revision {revision} at the same moment, and raw batches are never overwritten; "
            f"check which file is right (see {record_key}) and land the other under another "
            "batch id"
        ) from None
    return record


def read_raw(data: bytes, ext: str) -> pd.DataFrame:
    """Parse raw bytes into a frame, with no type coercion beyond the reader's own."""
    if ext == ".parquet":
        return pd.read_parquet(io.BytesIO(data))
    compression = "gzip" if ext.endswith(".gz") else "zip" if ext.endswith(".zip") else None
    if compression is None and idle_cores() and (frame := read_csv_fast(data)) is not None:
        return frame
    return pd.read_csv(io.BytesIO(data), compression=compression)


def idle_cores() -> bool:
    """Whether a multi-threaded reader can expect cores to itself. Measured on 1M flights rows
    (2 cores): pyarrow 1.2 s against pandas 2.3 s at a load average of 6, but 4.3 s against
    2.0 s at a load average of 17, when its threads fight the machine's other work."""
    return os.getloadavg()[0] < (os.cpu_count() or 1)


# The columns pyarrow may hand over: for these its values are those of pandas' reader (tested
# on every 2013 month, exactly); any other (an all-null column, booleans, dates it inferred)
# and the file is read again by pandas.
ARROW_TYPES = ("int64", "double", "string")


def read_csv_fast(data: bytes) -> pd.DataFrame | None:
    """Plain CSV bytes read by pyarrow's multi-threaded reader, with pandas' null markers and
    no timestamp inference (the time column stays text, as pandas reads it; the gate parses
    it); None when pyarrow would not give what `pd.read_csv` gives, or fails."""
    import pyarrow as pa
    import pyarrow.csv as arrow_csv
    from pandas._libs.parsers import STR_NA_VALUES

    convert = arrow_csv.ConvertOptions(
        null_values=sorted(STR_NA_VALUES),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        timestamp_parsers=["\x01"],  # a format no value matches: never infer timestamps
    )
    # A quoted value may hold a newline: allowing it costs the parallel block split.
    parse = arrow_csv.ParseOptions(newlines_in_values=data.find(b'"') >= 0)
    try:
        table = arrow_csv.read_csv(pa.py_buffer(data), parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # pandas reads it, or names the error as before
    if any(str(field.type) not in ARROW_TYPES or not field.name for field in table.schema):
        return None  # ... or a nameless column, which pandas calls "Unnamed: N"
    text = pd.Series(["text"]).dtype  # what pandas' reader gives text: pandas 3 `str`
    if getattr(text, "storage", None) == "pyarrow":  # arrow-backed: hand the buffers over
        return table.to_pandas(types_mapper={pa.string(): text}.get)  # 4x faster than plain
    return table.to_pandas()


# `2013-01-01T10:00:00Z`: what most exports write. `parse_times` gives such values their
# instant in UTC; pyarrow does the same twenty times faster (no Python regex per value).
UTC_SECONDS = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}Z$"


def utc_times(values: pd.Series) -> pd.Series | None:
    """Text times that are all (nulls aside) whole seconds in UTC, parsed by pyarrow; None
    for anything else (offsets, naive times, impossible dates), which `parse_times` reads."""
    import pyarrow as pa
    import pyarrow.compute as compute

    if values.dtype.type is not str:
        return None
    text = pa.Array.from_pandas(values)
    if not compute.all(compute.match_substring_regex(text, UTC_SECONDS)).as_py():
        return None  # `all` skips nulls, which stay null (NaT) below, as in `parse_times`
    try:
        stamps = compute.cast(text, pa.timestamp("s", tz="UTC"))
    except pa.ArrowInvalid:  # e.g. 2013-02-30: parse_times makes it NaT
        return None
    return stamps.to_pandas().set_axis(values.index).rename(values.name)  # positions, not labels


def landed_batches(storage: Storage, config: PerennialConfig) -> list[str]:
    """Batch ids landed so far (revisions of a batch count once)."""
    keys = storage.list(landing_folder(config))
    names = [
        k.rsplit("/", 1)[-1].removesuffix(LANDED_SUFFIX) for k in keys if k.endswith(LANDED_SUFFIX)
    ]
    return sorted(name for name in names if not re.search(r"\.r\d+$", name))


def newest_landed(storage: Storage, config: PerennialConfig) -> str:
    """The newest landed batch (what a scheduled run without a batch looks at)."""
    landed = landed_batches(storage, config)
    if not landed:
        raise NotLandedError(f"no landed batch of {config.dataset}: ingest one")
    return landed[-1]


@task(name="newest-landed-batch", cache_policy=NO_CACHE)
def newest_landed_task(config: PerennialConfig) -> str:
    from tasks.core.storage import open_storage

    return newest_landed(open_storage(config.home), config)


@task(name="choose-batches", cache_policy=NO_CACHE)
def choose_batches_task(config: PerennialConfig, batches: str, reason: str) -> list[str]:
    """The batches a run uses: the range or list `batches` (each id checked), or, when empty,
    every landed batch."""
    from tasks.core.run_logging import run_logger
    from tasks.core.storage import open_storage

    chosen = (
        expand_range(batches, config.time)
        if batches
        else landed_batches(open_storage(config.home), config)
    )
    run_logger().info("%s on %s (%s)", config.dataset, ",".join(chosen), reason)
    return chosen


def land_from(config: PerennialConfig, batch: str, source_file: str | None) -> LandingRecord:
    """Land a batch from `source_file`, or from the dataset's configured source."""
    from tasks.core.storage import open_storage

    if source_file:
        path = Path(source_file)
        data, ext, origin = read_source_file(path), raw_extension(path.name), str(path.resolve())
    else:
        data, ext, origin = extract_from_source(config, batch)
    return land_batch(open_storage(config.home), config, batch, data, ext, origin)


@task(name="land-batch", cache_policy=NO_CACHE)
def land_batch_task(config: PerennialConfig, batch: str, source_file: str | None) -> LandingRecord:
    return land_from(config, batch, source_file)
