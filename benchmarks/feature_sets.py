"""What the aircraft features do to holdout AUC: Perennial's search and final fit with the demo
config's features, and with the same features minus the aircraft's year and seats (the plain
script's set: it does not join the planes table), on three holdouts (2013-06, -09, -12).

One study name is one draw of Hyperband brackets, so each holdout runs several names, both
feature sets on each name, in alternating order (as `search_layout.py` does for layouts). The
months are landed and gated into a temporary home with Perennial's own functions; each run is
`tasks.learn.tune.tune` (40 trials, PERENNIAL_SPLIT__MAX_TRAIN_ROWS=400000) and
`tasks.learn.train.fit_model`, scored on the holdout month.

Writes benchmarks/results/feature_sets.json (nothing else writes it):

    .venv/bin/python benchmarks/feature_sets.py [--names 4] [--trials 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from search_layout import landed_datasets, paired_runs, spread

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "feature_sets.json"
HOLDOUTS = (6, 9, 12)
AIRCRAFT = ("plane_year", "plane_seats")


def feature_sets(config: Any, months: list[str]) -> dict[str, tuple[Any, Any]]:
    """Config and datasets of each feature set, on the months landed in the config's home."""
    from tasks.core.storage import open_storage
    from tasks.data.features import build_datasets

    storage = open_storage(config.home)
    without = [c for c in config.features.numeric if c not in AIRCRAFT]
    sets = {}
    numerics = {"with_aircraft": config.features.numeric, "without_aircraft": without}
    for name, numeric in numerics.items():
        features = config.features.model_copy(update={"numeric": numeric})
        variant = config.model_copy(update={"features": features})
        sets[name] = (variant, build_datasets(storage, variant, months))
    return sets


def holdout_runs(holdout: int, names: int, trials: int) -> dict[str, list[dict[str, Any]]]:
    months = [f"2013-{month:02d}" for month in range(1, holdout + 1)]
    with tempfile.TemporaryDirectory(prefix="perennial-bench-features-") as folder:
        config, _ = landed_datasets(Path(folder), months)
        assert set(AIRCRAFT) <= set(config.features.numeric), "the demo config changed"
        return paired_runs(feature_sets(config, months), f"features-{holdout}", names, trials)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", type=int, default=4, help="study names per holdout")
    parser.add_argument("--trials", type=int, default=40)
    args = parser.parse_args()
    started = datetime.now(UTC)
    load_at_start = round(os.getloadavg()[0], 2)
    holdouts = {}
    for holdout in HOLDOUTS:
        runs = holdout_runs(holdout, args.names, args.trials)
        gains = [
            round(without["holdout_auc"] - with_["holdout_auc"], 4)
            for with_, without in zip(runs["with_aircraft"], runs["without_aircraft"], strict=True)
        ]
        holdouts[f"2013-{holdout:02d}"] = {
            "auc": {name: spread(rows, "holdout_auc") for name, rows in runs.items()},
            "gain_without_aircraft": {"mean": round(statistics.fmean(gains), 4), "per_name": gains},
            "runs": runs,
        }
    result = {
        "what": "holdout AUC of Perennial's search + final fit, 40 trials, the demo config's "
        "features with and without the aircraft's year and seats, on the same study names",
        "aircraft_features": list(AIRCRAFT),
        "trials": args.trials,
        "names": args.names,
        "holdouts": holdouts,
        "mean_gain_without_aircraft": round(
            statistics.fmean(h["gain_without_aircraft"]["mean"] for h in holdouts.values()), 4
        ),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "measured_at": started.isoformat(timespec="seconds"),
        "load_average_1m_at_start": load_at_start,
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({h: v["gain_without_aircraft"] for h, v in holdouts.items()}, indent=2))


if __name__ == "__main__":
    main()
