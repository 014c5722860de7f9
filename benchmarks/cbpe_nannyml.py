"""Cross-check of tasks/watch/estimate.py against NannyML's own CBPE, in an environment of its own
(NannyML needs xgboost < 3, so it cannot join the project's lock):

    .venv/bin/python benchmarks/cbpe.py --scores /tmp/cbpe_scores.npz
    uv run --no-project --python 3.11 --with nannyml==0.13.1 --with statsmodels \\
        python benchmarks/cbpe_nannyml.py /tmp/cbpe_scores.npz

Reads the scores and labels cbpe.py saved (the March holdout as reference, April-December as
analysis), runs nannyml.CBPE (isotonic calibration, roc_auc) on each month as one chunk, and
writes benchmarks/results/cbpe_nannyml.json with NannyML's estimate beside ours (from
benchmarks/results/cbpe.json). It also prints NannyML's estimate on the seeded synthetic case
that tests/unit/test_estimate.py pins (`synthetic_case` there builds the same arrays).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

# NannyML posts usage analytics to segment.io unless told not to.
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import nannyml as nml
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OURS = ROOT / "benchmarks" / "results" / "cbpe.json"
RESULTS = ROOT / "benchmarks" / "results" / "cbpe_nannyml.json"


def nannyml_auc(ref_scores: np.ndarray, ref_labels: np.ndarray, scores: np.ndarray) -> float:
    def frame(p: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"y_pred_proba": p, "y_pred": (p >= 0.5).astype(int)})

    estimator = nml.CBPE(
        y_pred_proba="y_pred_proba",
        y_pred="y_pred",
        y_true="y_true",
        problem_type="classification_binary",
        metrics=["roc_auc"],
        chunk_number=1,
    )
    estimator.fit(frame(ref_scores).assign(y_true=ref_labels))
    result = estimator.estimate(frame(scores)).filter(period="analysis").to_df()
    return float(result[("roc_auc", "value")].iloc[0])


def synthetic_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Must match tests/unit/test_estimate.py: miscalibrated (squared) scores, shifted batch."""
    rng = np.random.default_rng(11)
    truth = 1 / (1 + np.exp(-(rng.normal(0, 1.3, 5000) - 1.2)))
    labels = rng.binomial(1, truth)
    batch = 1 / (1 + np.exp(-(rng.normal(0.5, 1.3, 5000) - 1.2)))
    return truth**2, labels, batch**2


def main() -> None:
    warnings.simplefilter("ignore")  # NannyML warns that one chunk is few chunks
    saved = np.load(sys.argv[1])
    ours = {m["batch"]: m for m in json.loads(OURS.read_text())["months"]}
    months = []
    for batch, mine in ours.items():
        theirs = nannyml_auc(
            saved["reference_scores"], saved["reference_labels"], saved[f"{batch}_scores"]
        )
        months.append(
            {
                "batch": batch,
                "nannyml_estimated_auc": round(theirs, 4),
                "perennial_estimated_auc": mine["estimated_auc"],
                "difference": round(mine["estimated_auc"] - theirs, 4),
                "real_auc": mine["real_auc"],
            }
        )
        print(json.dumps(months[-1]))
    synthetic = round(nannyml_auc(*synthetic_case()), 4)
    result = {
        "nannyml": nml.__version__,
        "pandas": pd.__version__,
        "months": months,
        "max_abs_difference": max(abs(m["difference"]) for m in months),
        "synthetic_case_nannyml_auc": synthetic,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"synthetic case: NannyML {synthetic}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
