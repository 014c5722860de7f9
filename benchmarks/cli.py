"""CLI start-up: wall time of `perennial --help` (a fresh process each time), against two
baselines measured in the same run: a bare interpreter (`python -c pass`) and one that only
imports Typer (the floor for any Typer CLI).

    .venv/bin/python benchmarks/cli.py [--runs 7]

Writes benchmarks/results/cli.json; the median of --runs is reported for each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "cli.json"
BIN = Path(sys.executable).parent


def median_wall_s(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    perennial = str(BIN / "perennial")
    results = {
        "what": "wall time of a fresh process, median of runs",
        "runs": runs,
        "perennial_help_s": median_wall_s([perennial, "--help"], runs),
        "perennial_train_help_s": median_wall_s([perennial, "train", "--help"], runs),
        "baseline_python_s": median_wall_s([sys.executable, "-c", "pass"], runs),
        "baseline_import_typer_s": median_wall_s([sys.executable, "-c", "import typer"], runs),
        "load_average": round(os.getloadavg()[0], 2),
    }
    results["help_over_typer_import"] = round(
        results["perennial_help_s"] / results["baseline_import_typer_s"], 2
    )
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
