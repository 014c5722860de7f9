"""Data Docs: Great Expectations' own validation of each gated batch, off the critical path.

The gate decides with the native evaluator (`tasks/data/checks.py`) in well under a second; GE's
full
result and its Data Docs page cost an import of 6-10 s and about a second a batch. So the gate
only leaves a request (`<docs>/requests/<time>-<batch>.json`) and starts, if none is running, one
detached worker process (`python -m tasks.data.data_docs <docs>`). The worker loads one GE context,
works through every request (a demo's twelve months pay one import), writes GE's result in
the gate's words to `<docs>/results/<dataset>/<batch>.r<revision>.json`, renders the Data Docs
page, and exits when no request is left. Where GE's verdict differs from the gate's, it says so
in `<docs>/disagreements/` and in its log (`<docs>/worker.log`): GE stays the authority.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks.core.processes import pid_alive

REQUESTS, RESULTS, DISAGREEMENTS = "requests", "results", "disagreements"
LOCK, LOG = "worker.pid", "worker.log"
ROOT = Path(__file__).resolve().parents[2]
WORKER_NICENESS = 15  # the worker yields the CPU to commands (see __main__)


def yield_cpu() -> None:
    """Run below the commands that queue the work: on two cores the worker's GE import and
    rendering (31 s of CPU for a 12-month training) took a core from the search beside it.
    The worker has its own session, and where the kernel groups sessions (autogroup) niceness
    counts only inside a group: the group's own niceness is what the other sessions see."""
    os.nice(WORKER_NICENESS)
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(WORKER_NICENESS))


def request_docs(docs: Path, config: Any, result: Any) -> Path:
    """Queue GE's validation and Data Docs of a gated batch and make sure a worker runs."""
    from tasks.core.private_state import private_folder

    folder = private_folder(docs / REQUESTS)  # under PERENNIAL_HOME: the user's only
    payload = {
        # What the gate read, without the back-end URLs (they may hold credentials)
        "config": config.model_dump(mode="json", exclude={"mlflow_uri", "optuna_storage"}),
        "batch": result.batch,
        "revision": result.revision,
        "raw_key": result.raw_key,
        "failed": sorted(_failed(result.outcomes)),
    }
    target = folder / f"{time.time_ns()}-{result.batch}.json"
    partial = target.with_suffix(".tmp")
    partial.touch(mode=0o600)
    partial.write_text(json.dumps(payload, default=str))
    partial.replace(target)  # the worker never reads half a request
    start_worker(docs)
    return target


def _failed(outcomes: list[Any]) -> set[tuple[str, str | None]]:
    return {
        (o.expectation, o.column)
        for o in outcomes
        if not o.success and o.expectation.startswith("expect_")  # GE's own checks only
    }


def worker_running(docs: Path) -> bool:
    try:
        pid = int((docs / LOCK).read_text())
    except (FileNotFoundError, ValueError):
        return False
    return pid_alive(pid)


def start_worker(docs: Path) -> None:
    """Start the worker detached (its own session: it finishes after the command exits)."""
    if worker_running(docs):
        return
    with (docs / LOG).open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "tasks.data.data_docs", str(docs)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_idle(docs: Path, timeout: float = 180) -> None:
    """Until every request is done and no worker runs (tests, and `validate --docs`-like use)."""
    deadline = time.monotonic() + timeout
    while list((docs / REQUESTS).glob("*.json")) or worker_running(docs):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Data Docs worker under {docs} still busy after {timeout:g} s")
        time.sleep(0.2)


def _take_lock(docs: Path) -> bool:
    lock = docs / LOCK
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            if worker_running(docs):
                return False
            lock.unlink(missing_ok=True)  # a worker that died: take over
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(str(os.getpid()))
        return True
    return False


def serve_requests(docs: Path) -> int:
    """Work through the queue with one GE context; returns how many requests were done."""
    done = 0
    while _take_lock(docs):
        try:
            while pending := sorted((docs / REQUESTS).glob("*.json")):
                for request in pending:
                    try:
                        _serve(docs, json.loads(request.read_text()))
                    except Exception as exc:  # one bad request must not block the queue
                        print(f"{request.name}: {type(exc).__name__}: {exc}", flush=True)
                    request.unlink()
                    done += 1
        finally:
            (docs / LOCK).unlink(missing_ok=True)
        # A gate may have queued a request after the last look and seen the lock still held.
        if not list((docs / REQUESTS).glob("*.json")):
            break
    return done


def _serve(docs: Path, request: dict[str, Any]) -> None:
    from tasks.core.config import PerennialConfig
    from tasks.core.storage import open_storage
    from tasks.data.expectations import apply_severity, build_data_docs, run_suite
    from tasks.data.ingest import landed_history
    from tasks.data.parse import parse_raw, typed_frame

    config = PerennialConfig.model_validate(request["config"])
    batch, revision = request["batch"], request["revision"]
    storage = open_storage(config.home)
    record = landed_history(storage, config, batch)[revision - 1]
    frame, _ = parse_raw(storage.read_bytes(record.key), record, config)
    if frame is None:
        return
    outcomes = apply_severity(
        run_suite(typed_frame(frame, config), config, batch, docs), config.validation.severity
    )
    name = f"{config.dataset}/{batch}.r{revision}.json"
    _write(docs / RESULTS / name, [asdict(o) for o in outcomes])
    ge_failed = sorted(_failed(outcomes))
    gate_failed = sorted(tuple(pair) for pair in request["failed"])
    if ge_failed != gate_failed:
        disagreement = {"batch": batch, "revision": revision, "ge": ge_failed, "gate": gate_failed}
        _write(docs / DISAGREEMENTS / name, disagreement)
        print(f"GE and the gate disagree on {config.dataset} {batch}: {disagreement}", flush=True)
    build_data_docs(config, docs)


def _write(path: Path, content: Any) -> None:
    from tasks.core.private_state import private_folder

    private_folder(path.parent)
    path.write_text(json.dumps(content, indent=1, default=str))


if __name__ == "__main__":  # pragma: no cover - the detached worker
    folder = Path(sys.argv[1])
    yield_cpu()
    with contextlib.suppress(KeyboardInterrupt):
        print(f"{time.strftime('%H:%M:%S')} {serve_requests(folder)} requests done", flush=True)
