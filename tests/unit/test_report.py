"""The report: batch records written once per (version, batch), quarantines gathered, and a page
that escapes every value from data, asks nothing of the network and marks champion changes."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from tasks.core import catalog
from tasks.core.config import PerennialConfig, load_config
from tasks.core.storage import Storage
from tasks.watch.estimate import Estimate
from tasks.watch.profile import DriftReport
from tasks.watch.report import batch_record, load_batch_records, load_quarantines, save_batch_record
from tasks.watch.report_figures import champion_changes
from tasks.watch.report_page import render_page

FLIGHTS = Path(__file__).resolve().parents[2] / "configs" / "flights.yaml"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def config(tmp_path: Path) -> PerennialConfig:
    return load_config(FLIGHTS).model_copy(update={"home": str(tmp_path / "home")})


def drift_report(batch: str, version: str, labelled: bool = True) -> DriftReport:
    return DriftReport(
        dataset="flights",
        batch=batch,
        reference_version=version,
        rows=1000,
        status="ok",
        psi={"distance": 0.01, "(prediction)": 0.02},
        max_psi=0.02,
        drifted_features=[],
        warned_features=[],
        estimated=Estimate(method="CBPE", metric="roc_auc", value=0.7, realised=0.68, error=0.02),
        labelled={
            "roc_auc": 0.68,
            "log_loss": 0.5,
            "label_rate": 0.2,
            "mean_prediction": 0.21,
            "rows": 990,
        }
        if labelled
        else None,
    )


def test_a_batch_is_recorded_once_per_model_version(config: PerennialConfig) -> None:
    storage = Storage(config.home)
    assert save_batch_record(storage, config, batch_record(drift_report("2013-05", "3")))
    key = catalog.key("batch_record", config, batch="2013-05", version="3")
    first = storage.read_bytes(key)
    # Monitored again by the same champion: the first record stays.
    assert not save_batch_record(storage, config, batch_record(drift_report("2013-05", "3")))
    assert storage.read_bytes(key) == first
    # Another champion sees the batch: a record of its own; the report shows the newest.
    later = batch_record(drift_report("2013-05", "4"))
    later["recorded_at"] = "2999-01-01T00:00:00+00:00"
    assert save_batch_record(storage, config, later)
    assert save_batch_record(storage, config, batch_record(drift_report("2013-04", "3")))
    records = load_batch_records(storage, config)
    assert [(r["batch"], r["model_version"]) for r in records] == [
        ("2013-04", "3"),
        ("2013-05", "4"),
    ]
    assert records[1]["labelled"]["log_loss"] == 0.5
    assert records[1]["estimated"]["value"] == 0.7


def test_a_record_made_before_labels_is_completed_when_they_land(config: PerennialConfig) -> None:
    storage = Storage(config.home)
    assert save_batch_record(storage, config, batch_record(drift_report("2013-06", "2", False)))
    assert save_batch_record(storage, config, batch_record(drift_report("2013-06", "2")))
    (record,) = load_batch_records(storage, config)
    assert record["labelled"]["roc_auc"] == 0.68


def test_quarantines_are_gathered_with_their_rules(config: PerennialConfig) -> None:
    storage = Storage(config.home)
    reason = {
        "stage": "expectations",
        "message": "2 checks failed",
        "revision": 2,
        "failed": [{"expectation": "expect_column_values_to_not_be_null", "column": "x"}],
    }
    storage.write_json(catalog.quarantine_reason_key(config, "2013-07"), reason)
    storage.write_json(
        catalog.quarantine_reason_key(config, "2013-07", revision=1),
        {**reason, "revision": 1, "failed": []},
    )
    storage.write_bytes("quarantine/flights/2013-07.csv", b"raw")  # the raw copy: not a reason
    found = load_quarantines(storage, config)
    assert [(q["batch"], q["revision"]) for q in found] == [("2013-07", 1), ("2013-07", 2)]
    assert found[1]["rules"] == ["expect_column_values_to_not_be_null on x"]


def history(hostile: str = "distance") -> dict[str, Any]:
    """A small history of every kind the page shows; `hostile` goes into every text field."""
    batches = []
    for i, (batch, version) in enumerate(
        [("2013-04", "1"), ("2013-05", "1"), ("2013-06", "3"), ("2013-07", "3"), ("2013-08", "5")]
    ):
        report = drift_report(batch, version)
        report.psi = {hostile: 0.05 * i, "carrier": 0.3 - 0.05 * i, "$x$ and $y": 0.1}
        report.status = "alert" if i == 1 else "ok"
        batches.append(batch_record(report))
    decision = {
        "decision": "promoted",
        "decided_at": "2026-11-30T10:00:00+00:00",
        "compared_with": "1",
        "reasons": [f"roc_auc +0.03 {hostile}"],
    }
    return {
        "model": f"flights-late-arrival{hostile if hostile != 'distance' else ''}",
        "dataset": "flights",
        "generated_at": "2026-11-30T12:00:00+00:00",
        "psi_warn": 0.1,
        "psi_alert": 0.25,
        "prices_as_of": f"2019-01 {hostile}",
        "batches": batches,
        "decisions": [
            {
                **decision,
                "version": "1",
                "holdout": "2013-03",
                "compared_with": "none",
                "challenger_value": 0.69,
                "champion_value": None,
            },
            {
                **decision,
                "version": "2",
                "holdout": "2013-04",
                "decision": "rejected",
                "challenger_value": 0.67,
                "champion_value": 0.64,
            },
            {
                **decision,
                "version": "3",
                "holdout": "2013-05",
                "challenger_value": 0.76,
                "champion_value": 0.70,
            },
        ],
        "moves": [{"action": "train", "from": "1", "to": "3"}],
        "quarantines": [
            {
                "batch": "2013-09",
                "revision": 1,
                "stage": "expectations",
                "message": f"failed {hostile}",
                "rules": [f"in set on {hostile}"],
            }
        ],
        "costs": [
            {
                "run_id": "a" * 32,
                "version": "1",
                "wall_seconds": 30.0,
                "cpu_seconds": 40.0,
                "peak_rss_mb": 900.0,
                "usd": 0.0005,
            },
            {
                "run_id": "b" * 32,
                "version": None,
                "wall_seconds": 20.0,
                "cpu_seconds": 25.0,
                "peak_rss_mb": 800.0,
                "usd": 0.0003,
            },
        ],
    }


def images(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]*)"', page)


def test_values_from_data_are_escaped_and_a_hostile_feature_name_does_not_inject() -> None:
    page = render_page(history(HOSTILE))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 5  # model, reason, quarantine, rule, prices


def test_the_page_is_self_contained_with_every_figure_inline() -> None:
    page = render_page(history())
    found = images(page)
    assert len(found) == 4  # metrics, decisions, drift heat map, cost
    for source in found:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # No address outside the file: no http(s), protocol-relative or file URL, no link element.
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert not re.search(r"(https?:|//[a-z0-9]|file:|<link|<script|@import|url\()", text, re.I)
    assert "default-src 'none'" in page  # and the browser is told to fetch nothing


def test_champion_changes_are_marked_per_batch() -> None:
    data = history()
    assert champion_changes(data["batches"]) == [2, 4]
    page = render_page(data)
    assert page.count('<tr class="change">') == 2
    assert '<td class="promoted">promoted</td>' in page and '<td class="rejected">' in page
    assert "0.7000" in page and "+0.0200" in page  # the CBPE estimate beside the real AUC


def test_an_empty_history_gives_a_page_that_says_so() -> None:
    empty = {
        **history(),
        "batches": [],
        "decisions": [],
        "moves": [],
        "quarantines": [],
        "costs": [],
    }
    page = render_page(empty)
    assert images(page) == []
    assert "No monitored batch yet" in page and "No batch quarantined" in page


def test_a_replay_adds_its_figure_and_table() -> None:
    assert "No replay yet" in render_page(history())
    replay = {
        "batches": ["2013-04", "2013-05", "2013-06"],
        "policies": {
            name: {
                "per_batch": [0.70 - i * 0.01, 0.69, 0.71],
                "mean_realized": 0.70 - i * 0.003,
                "interval": [0.69, 0.71],
                "retrains": 3 - i,
                "promotions": 2,
                "alerts": i,
            }
            for i, name in enumerate(["every_batch", "configured", f"never{HOSTILE}"])
        },
    }
    page = render_page({**history(), "replay": replay})
    assert len(images(page)) == 5 and "No replay yet" not in page
    assert "<td>configured</td><td>0.6970</td><td>[0.6900, 0.7100]</td><td>2</td>" in page
    assert "<script" not in page.lower()


def test_fairness_on_labelled_batches_adds_rates_per_group_over_time() -> None:
    import numpy as np
    import pandas as pd

    from tasks.core.config_fairness import FairnessConfig
    from tasks.registry.fairness import group_report

    assert "Fairness by group" not in render_page(history())  # flights declares no groups
    data = history()
    settings = FairnessConfig(sensitive=[HOSTILE], min_group_size=2)
    for i, batch in enumerate(data["batches"]):
        labels = np.array([1, 0, 1, 0, 1, 0])
        scores = np.array([0.9, 0.2, 0.6 - 0.1 * i, 0.7, 0.4, 0.1])
        groups = pd.DataFrame({HOSTILE: ["a", "a", "b", "b", "c", "c"]})
        batch["fairness"] = group_report(labels, scores, groups, settings).as_dict()
    page = render_page(data)
    assert "<h2>Fairness by group</h2>" in page
    assert len(images(page)) == 5  # the four of the page, and the rates per group
    assert "<script" not in page.lower()
    # Each batch's row names, for each of the three metrics, the column of its largest gap.
    assert page.count("(&lt;script&gt;alert(1)&lt;/script&gt;)") == 3 * len(data["batches"])
