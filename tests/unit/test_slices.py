"""Slice metrics on a hand-made case whose answers are worked out by hand below."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.registry.slices import expected_calibration_error, slice_auc_gap, slice_metrics

# Slice A: labels 0 0 1 1, scores .10 .15 .80 .95 -> AUC 1.
#   ECE bins: [.1,.2) holds .10 .15 (label rate 0, mean score .125): 2/4 * .125 = .0625
#             [.8,.9) holds .80 (1 vs .80): 1/4 * .20 = .05; [.9,1] holds .95: 1/4 * .05 = .0125
#   ECE = .125
# Slice B: labels 0 1 0 1, scores .30 .20 .60 .70 -> positives beat negatives in 2 of 4 pairs,
#   AUC .5; one row per bin: (.3 + .8 + .6 + .3) / 4 = .5
# Slice C: two rows, below min_rows: left out.
FRAME = pd.DataFrame({"carrier": ["A"] * 4 + ["B"] * 4 + ["C"] * 2})
LABELS = np.array([0, 0, 1, 1, 0, 1, 0, 1, 1, 0])
SCORES = np.array([0.10, 0.15, 0.80, 0.95, 0.30, 0.20, 0.60, 0.70, 0.5, 0.5])


def test_slice_metrics_by_hand() -> None:
    table = {row["slice"]: row for row in slice_metrics(FRAME, LABELS, SCORES, ["carrier"], 4)}
    assert set(table) == {"carrier=A", "carrier=B"}
    a, b = table["carrier=A"], table["carrier=B"]
    assert a["auc"] == pytest.approx(1.0) and b["auc"] == pytest.approx(0.5)
    assert a["ece"] == pytest.approx(0.125) and b["ece"] == pytest.approx(0.5)
    assert a["positive_rate"] == b["positive_rate"] == pytest.approx(0.5)
    assert a["mean_score"] == pytest.approx(0.5) and b["mean_score"] == pytest.approx(0.45)
    assert a["rows"] == b["rows"] == 4
    assert slice_auc_gap(list(table.values())) == pytest.approx(0.5)


def test_calibration_edges() -> None:
    # A score of exactly 1 sits in the last bin; a perfectly calibrated bin adds nothing.
    assert expected_calibration_error(np.array([1, 1]), np.array([1.0, 1.0])) == 0.0
    y = np.array([1, 0, 1, 0])
    assert expected_calibration_error(y, np.full(4, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(4, 0.75)) == pytest.approx(0.25)
    one_class = slice_metrics(FRAME.iloc[:2], LABELS[:2], SCORES[:2], ["carrier"], 1)
    assert np.isnan(one_class[0]["auc"]) and np.isnan(slice_auc_gap(one_class))
