"""The gate at its limits, through the CLI: a decompression bomb is quarantined with bounded
memory (in a real `perennial` process, whose peak RSS is measured), a dataset without a suite
lands its first batch and refuses to gate it until `validate --profile` drafts one (which warns
about a reference shorter than a year)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.config import load_config
from tasks.core.storage import Storage
from tasks.data.ingest import is_quarantined, landed_record
from tasks.data.raw_files import read_raw
from tasks.data.source import extract_from_source
from tests.conftest import FLIGHTS, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BATCH = "2013-04"
MB = 1024 * 1024
LIMIT_MB = 16  # above the April CSV (about 5 MB), far below the bomb
BOMB_MB = 4096  # a `perennial ingest` process peaks at about 470 MB whatever it reads


@pytest.fixture(scope="module")
def april_csv() -> bytes:
    data, ext, _ = extract_from_source(load_config(FLIGHTS), BATCH)
    return read_raw(data, ext).to_csv(index=False).encode()


def gzip_bomb(megabytes: int) -> bytes:
    """`megabytes` MB of zeros as a valid gzip file of repeated members (about 1 KB per MB)."""
    member = gzip.compress(bytes(64 * MB))
    return member * (megabytes // 64)


def run_measured(env: dict[str, str], *args: str) -> tuple[int, str, int]:
    """`perennial ARGS` in a child process: exit code, output, and the child's own peak RSS in
    bytes (from wait4's rusage, so no other process of the session counts)."""
    out = Path(env["PERENNIAL_HOME"]).parent / "child.out"
    with out.open("wb") as sink:
        child = subprocess.Popen(
            [str(Path(sys.executable).parent / "perennial"), *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    return child.returncode, out.read_text(), usage.ru_maxrss * 1024  # Linux: KB


def test_a_gzip_bomb_is_quarantined_in_bounded_memory_and_a_revision_lands(
    prefect_api_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    april_csv: bytes,
) -> None:
    home = tmp_path / "home"
    env = {
        "PREFECT_API_URL": prefect_api_url,
        "PERENNIAL_HOME": str(home),
        "PERENNIAL_VALIDATION__MAX_FILE_MB": str(LIMIT_MB),
        "PERENNIAL_VALIDATION__DATA_DOCS": "false",
    }
    bomb = gzip_bomb(BOMB_MB)
    assert len(bomb) < 5 * MB
    source = tmp_path / "april.csv.gz"
    source.write_bytes(bomb)

    code, output, peak_rss = run_measured(env, "ingest", "--batch", BATCH, "--source", str(source))

    assert code == 1, output
    assert "Traceback" not in output, output
    assert "file_size" in output and f"validation.max_file_mb={LIMIT_MB}" in output, output
    # Decompressed whole, the bomb would need 4 GB; reading stops past the 16 MB limit.
    # Bounded: far below the 4 GB it decompresses to (whole, the child would hold > 4 GB). The
    # child peaks at ~0.47 GB run alone and at ~1.2 GB inside the full suite (not understood
    # yet), so the bound is half the bomb, not a quarter.
    assert peak_rss < BOMB_MB * MB / 2, peak_rss
    storage, config = Storage(home), load_config(FLIGHTS)
    reason = storage.read_json(f"quarantine/flights/{BATCH}.reason.json")
    assert reason["stage"] == "file_check"
    failure = reason["failed"][0]
    assert failure["expectation"] == "file_size", reason
    assert "decompresses to more than 16 MB" in failure["error"], failure
    assert f"from {len(bomb) / MB:.2f} MB compressed" in failure["error"], failure
    assert reason["message"] == "1 of 1 checks failed: file_size", reason
    record = landed_record(storage, config, BATCH)
    assert record is not None and is_quarantined(storage, config, record)
    assert not storage.list("validated/flights")

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    corrected = tmp_path / "corrected.csv.gz"
    corrected.write_bytes(gzip.compress(april_csv))
    result = CliRunner().invoke(app, ["ingest", "-b", BATCH, "--source", str(corrected)])

    assert result.exit_code == 0, result.output
    assert "landing revised, gate passed" in result.output
    assert storage.read_bytes(f"landing/flights/{BATCH}.r2.csv.gz") == corrected.read_bytes()
    assert storage.exists(f"validated/flights/{BATCH}.parquet")


def test_a_first_batch_without_a_suite_lands_and_is_refused_until_profiled(
    prefect_server: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    april_csv: bytes,
) -> None:
    home, gx_root = tmp_path / "home", tmp_path / "gx"
    monkeypatch.setenv("PERENNIAL_HOME", str(home))
    monkeypatch.setenv("PERENNIAL_VALIDATION__GX_ROOT", str(gx_root))
    monkeypatch.setenv("PERENNIAL_VALIDATION__DATA_DOCS", "false")
    source = tmp_path / "april.csv"
    source.write_bytes(april_csv)
    runner = CliRunner()

    refused = runner.invoke(app, ["ingest", "-b", BATCH, "--source", str(source)])

    assert refused.exit_code == 1, refused.output
    assert isinstance(refused.exception, SystemExit), refused.exception
    assert f"no suite for flights: run `perennial validate --profile {BATCH}`" in refused.output
    storage = Storage(home)
    assert storage.read_bytes(f"landing/flights/{BATCH}.csv") == april_csv
    assert not storage.list("quarantine/flights") and not storage.list("validated/flights")

    profiled = runner.invoke(app, ["validate", "--profile", BATCH])

    assert profiled.exit_code == 0, profiled.output
    warning = "warning: the reference spans 1.0 months (2013-04-01..2013-04-30), less than a year"
    assert warning in profiled.output, profiled.output
    gated = runner.invoke(app, ["validate", "-b", BATCH])
    assert gated.exit_code == 0, gated.output
    assert storage.exists(f"validated/flights/{BATCH}.parquet")
