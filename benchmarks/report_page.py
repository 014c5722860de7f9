"""The report page on a real history, its screenshot for docs/report.md, and what a refresh costs.

    .venv/bin/python benchmarks/report_page.py [--last 2013-08] [--trials 5] [--keep]

In a fresh temporary home, through the real flows (embedded Prefect): train the first champion
on 2013-01..2013-03, then for each month 2013-04..LAST monitor it (land, gate, drift, CBPE,
performance record, report refresh) and retrain on everything so far; land a cut-down copy of
the month after LAST (200 rows) so that the gate quarantines it. Then time `write_report` (what
monitoring's refresh adds to each run) against the monitoring runs themselves, open the page in
Debian's Chromium counting every request that leaves the file, and screenshot it to
benchmarks/results/report.png. Writes benchmarks/results/report_page.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "report_page.json"
SCREENSHOT = ROOT / "benchmarks" / "results" / "report.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def land_short_month(config, batch: str, rows: int = 200) -> None:  # type: ignore[no-untyped-def]
    """A month cut to `rows` rows (below validation.min_rows): the gate quarantines it."""
    from tasks.core.storage import open_storage
    from tasks.data.ingest import land_batch
    from tasks.data.raw_files import read_raw
    from tasks.data.source import extract_from_source

    data, ext, _ = extract_from_source(config, batch)
    short = read_raw(data, ext).head(rows).to_csv(index=False).encode()
    land_batch(open_storage(config.home), config, batch, short, ".csv", f"{batch} cut to {rows}")


def screenshot(page: Path) -> dict[str, object]:
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1200, "height": 900})
            tab.on("request", lambda request: requests.append(request.url))
            tab.goto(page.as_uri(), wait_until="load")
            widths = tab.eval_on_selector_all("img", "all => all.map(i => i.naturalWidth)")
            tab.screenshot(path=str(SCREENSHOT), full_page=True)
        finally:
            browser.close()
    leaving = [u for u in requests if not u.startswith(("file:", "data:"))]
    return {"requests": len(requests), "requests_leaving": leaving, "image_widths": widths}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--last", default="2013-08", help="Last month monitored and trained on.")
    parser.add_argument("--trials", type=int, default=5, help="Search trials per training.")
    parser.add_argument("--keep", action="store_true", help="Keep the temporary home.")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"needs Debian's Chromium at {CHROMIUM} (make browser): nothing measured")
    load_start = os.getloadavg()[0]
    started = time.perf_counter()
    home = Path(tempfile.mkdtemp(prefix="perennial-report-"))
    os.environ["PERENNIAL_HOME"] = str(home / "home")
    os.environ["PREFECT_HOME"] = str(home / "prefect")
    (home / "prefect").mkdir()
    from flows.terminal import set_quiet_defaults

    set_quiet_defaults(os.environ, False)

    from flows.monitoring import monitoring
    from flows.training import training
    from tasks.core.batches import expand_range
    from tasks.core.config import load_config
    from tasks.core.storage import open_storage
    from tasks.data.validate import GateRefusedError
    from tasks.watch.report import write_report

    config = load_config(ROOT / "configs" / "flights.yaml")
    months = expand_range(f"2013-04..{args.last}", config.time)
    quarantined = expand_range(f"{args.last}..2013-12", config.time)[1]
    training(batches="2013-01..2013-03", trials=args.trials, reason="report benchmark")
    monitor_seconds = []
    for month in months:
        began = time.perf_counter()
        monitoring(batch=month)
        monitor_seconds.append(time.perf_counter() - began)
        training(batches=f"2013-01..{month}", trials=args.trials, reason=f"{month} arrived")
    land_short_month(config, quarantined)
    with contextlib.suppress(GateRefusedError):  # the point: the gate quarantines it
        monitoring(batch=quarantined)
    storage = open_storage(config.home)
    write_seconds = []
    for _ in range(3):
        began = time.perf_counter()
        summary = write_report(storage, config)
        write_seconds.append(time.perf_counter() - began)
    browser = screenshot(Path(summary.path))
    result = {
        "what": "perennial report on a real history (flights, monitored and retrained monthly)",
        "command": f"python benchmarks/report_page.py --last {args.last} --trials {args.trials}",
        "months_monitored": months,
        "quarantined_batch": quarantined,
        "trials": args.trials,
        "batches": summary.batches,
        "decisions": summary.decisions,
        "quarantines": summary.quarantines,
        "costed_runs": summary.costs,
        "page_bytes": summary.bytes,
        "write_report_seconds": [round(s, 3) for s in write_seconds],
        "monitoring_run_seconds": [round(s, 2) for s in monitor_seconds],
        # what the refresh adds to a monitoring run (which includes one refresh already)
        "refresh_share_of_monitoring_run": round(
            statistics.median(write_seconds) / statistics.median(monitor_seconds), 3
        ),
        "browser_requests": browser["requests"],
        "browser_requests_leaving": browser["requests_leaving"],
        "image_natural_widths": browser["image_widths"],
        "screenshot": str(SCREENSHOT.relative_to(ROOT)),
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average_1m_start": round(load_start, 2),
        "load_average_1m_end": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other work "
        "(busy while measured: see the load averages)",
        "python": platform.python_version(),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if args.keep:
        print(f"history and page kept in {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
