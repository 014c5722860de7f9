"""CBPE: the AUC estimated from calibrated scores, before labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from tasks.watch.estimate import calibrate, estimate_auc, expected_auc, fit_calibration


def _calibrated(rows: int, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that are the true probability of the label: y ~ Bernoulli(score)."""
    rng = np.random.default_rng(seed)
    score = 1.0 / (1.0 + np.exp(-(rng.normal(shift, 1.3, rows) - 1.2)))
    return score, rng.binomial(1, score)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_expected_auc_of_calibrated_scores_is_the_realised_auc(seed: int) -> None:
    score, y = _calibrated(20_000, seed)
    assert abs(expected_auc(score, score) - roc_auc_score(y, score)) < 0.02


def test_estimate_after_isotonic_calibration_on_a_reference_of_distorted_scores() -> None:
    # The model's raw scores are miscalibrated (squared); the map fitted on the reference
    # undoes it, and the estimate on a shifted batch follows the batch's realised AUC.
    truth, y_ref = _calibrated(20_000, 7)
    calibration = fit_calibration(truth**2, y_ref)
    assert calibration is not None
    truth_batch, y_batch = _calibrated(20_000, 8, shift=0.8)
    raw = truth_batch**2
    assert np.abs(calibrate(calibration, raw) - truth_batch).mean() < 0.03
    realised = float(roc_auc_score(y_batch, raw))
    found = estimate_auc(calibration, raw, realised)
    assert found is not None
    assert abs(found.value - realised) < 0.02
    assert found.realised == realised
    assert found.error == pytest.approx(found.value - realised)
    # Miscalibrated scores used as if they were probabilities give a worse estimate.
    assert abs(expected_auc(raw, raw) - realised) > abs(found.value - realised)


def test_ties_count_as_one_threshold() -> None:
    # Two tied rows with p 1 and 0: ranked together the expected AUC is 0.5, not 1 or 0.
    assert expected_auc(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert expected_auc(np.array([0.9, 0.1]), np.array([1.0, 0.0])) == pytest.approx(1.0)


def test_no_estimate_without_a_map_or_with_one_class() -> None:
    assert estimate_auc(None, np.array([0.2, 0.4])) is None
    assert fit_calibration(np.linspace(0, 1, 100), np.zeros(100)) is None
    assert fit_calibration(np.array([0.1, 0.9]), np.array([0, 1])) is None
    assert np.isnan(expected_auc(np.array([0.3, 0.6]), np.array([0.0, 0.0])))


def synthetic_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Miscalibrated (squared) reference scores with labels, and a shifted batch's scores; the
    same arrays as `synthetic_case` in benchmarks/cbpe_nannyml.py."""
    rng = np.random.default_rng(11)
    truth = 1 / (1 + np.exp(-(rng.normal(0, 1.3, 5000) - 1.2)))
    labels = rng.binomial(1, truth)
    batch = 1 / (1 + np.exp(-(rng.normal(0.5, 1.3, 5000) - 1.2)))
    return truth**2, labels, batch**2


def test_matches_nannyml_cbpe_on_a_pinned_case() -> None:
    # NannyML 0.13.1's CBPE (isotonic calibration, roc_auc) estimated 0.7971 on these arrays
    # (benchmarks/cbpe_nannyml.py, in its own environment: it cannot join our lock). On the nine
    # demo months the two agree to 4 decimals (benchmarks/results/cbpe_nannyml.json).
    reference_scores, reference_labels, batch_scores = synthetic_case()
    found = estimate_auc(fit_calibration(reference_scores, reference_labels), batch_scores)
    assert found is not None
    assert found.value == pytest.approx(0.7971, abs=5e-4)


@pytest.mark.parametrize(
    ("realised", "shown"),
    [(None, "estimated before labels (CBPE): 0.7012\n"), (0.6543, "real AUC 0.6543 (+0.0469)")],
)
def test_monitor_prints_the_estimate_as_an_estimate(
    monkeypatch: pytest.MonkeyPatch, realised: float | None, shown: str
) -> None:
    from flows.cli import app, runner
    from flows.monitoring import MonitoringSummary

    estimated = estimate_auc(
        {"scores": [0.0, 1.0], "probabilities": [0.0, 1.0]}, np.array([0.2, 0.8]), realised
    )
    assert estimated is not None
    estimated.value = 0.7012
    if realised is not None:
        estimated.error = 0.7012 - realised
    report = MonitoringSummary(
        dataset="flights",
        batch="2013-07",
        reference_version="2",
        rows=1000,
        status="ok",
        psi={"distance": 0.01},
        max_psi=0.01,
        drifted_features=[],
        warned_features=[],
        reasons=["max PSI 0.010 < 0.1"],
        estimated=estimated,
        plot_key="drift/flights/2013-07.png",
        event_emitted=False,
        shadow=None,
        arms=None,
        report=None,
    )
    monkeypatch.setattr(runner, "run", lambda flow, **parameters: report)
    result = CliRunner().invoke(app, ["monitor", "--batch", "2013-07"])
    assert result.exit_code == 0, result.output
    assert "champion AUC estimated before labels (CBPE): 0.7012" in result.output
    assert shown in result.output


def test_an_estimate_is_corrected_by_its_past_errors_and_given_their_range() -> None:
    from tasks.core.results import jsonable
    from tasks.watch.estimate import Estimate, trust_text, with_past_errors

    estimate = Estimate(method="CBPE", metric="roc_auc", value=0.70, realised=None, error=None)
    assert with_past_errors(estimate, [0.05]) == estimate  # one earlier batch says too little
    found = with_past_errors(estimate, [0.03, 0.05, 0.07, float("nan")])
    assert jsonable(found.past_errors) == pytest.approx(
        {"batches": 3, "mean": 0.05, "low": 0.03, "high": 0.07}
    )
    assert found.corrected == pytest.approx(0.65)
    assert found.range == pytest.approx([0.63, 0.67])
    assert "corrected 0.6500, likely 0.6300 to 0.6700" in trust_text(found)
    assert trust_text(estimate) == ""
    # Stored and printed as before: the correction's keys only once there is one.
    assert list(jsonable(estimate)) == ["method", "metric", "value", "realised", "error"]
    assert list(jsonable(found))[5:] == ["past_errors", "corrected", "range"]


def test_past_errors_come_from_earlier_labelled_batches_only(home: Path) -> None:
    from tasks.core.config import load_config
    from tasks.core.storage import Storage
    from tasks.watch.drift import past_estimate_errors
    from tasks.watch.report import save_batch_record

    config, storage = load_config(), Storage(home)
    for batch, error in [
        ("2013-04", 0.03),
        ("2013-05", None),
        ("2013-06", 0.05),
        ("2013-08", 0.09),
    ]:
        estimated = {"value": 0.7, "realised": None, "error": error}
        record = {
            "batch": batch,
            "model_version": "1",
            "recorded_at": f"2026-01-01T00:00:{batch[-2:]}",
            "labelled": {"roc_auc": 0.7} if error is not None else None,
            "estimated": estimated,
        }
        save_batch_record(storage, config, record)
    assert past_estimate_errors(storage, config, "2013-07") == [0.03, 0.05]
