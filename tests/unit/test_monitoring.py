"""The observability shipped in infra/monitoring: the Prometheus alert rules pass `promtool check
rules` and their unit tests (`promtool test rules`), and the Grafana dashboard is one Grafana
imports as is: its structure, its datasource (a variable, so it loads against any Prometheus),
non-overlapping panels, and PromQL that promtool parses. That every metric it names is one
`perennial serve` emits is checked against a live /metrics in
tests/integration/test_serve_protocols.py.

promtool comes from Debian's `prometheus` package (`make promtool`, which `make test` runs): where
it is missing the promtool checks are skipped, except in CI, where they fail."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

MONITORING = ROOT / "infra" / "monitoring"
DASHBOARD = MONITORING / "grafana" / "perennial.json"
RULES = MONITORING / "prometheus" / "rules.yml"
RULE_TESTS = MONITORING / "prometheus" / "rules.test.yml"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_COLUMNS = 24

# What Grafana's importer needs of a dashboard and of each panel (the subset this project uses;
# Grafana's full schema lives with Grafana).
TARGET = {
    "type": "object",
    "required": ["refId", "expr", "datasource"],
    "properties": {
        "refId": {"type": "string", "minLength": 1},
        "expr": {"type": "string", "minLength": 1},
        "legendFormat": {"type": "string"},
        "datasource": {"const": DATASOURCE},
    },
}
PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos"],
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "type": {"enum": ["row", "timeseries", "stat"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "datasource": {"const": DATASOURCE},
        "gridPos": {
            "type": "object",
            "required": ["h", "w", "x", "y"],
            "properties": {
                "h": {"type": "integer", "minimum": 1},
                "w": {"type": "integer", "minimum": 1, "maximum": GRID_COLUMNS},
                "x": {"type": "integer", "minimum": 0, "maximum": GRID_COLUMNS - 1},
                "y": {"type": "integer", "minimum": 0},
            },
        },
        "targets": {"type": "array", "items": TARGET},
        "fieldConfig": {"type": "object", "required": ["defaults", "overrides"]},
        "options": {"type": "object"},
    },
    "if": {"properties": {"type": {"const": "row"}}},
    "then": {"required": ["collapsed", "panels"]},
    "else": {"required": ["datasource", "targets", "fieldConfig", "options"]},
}
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["title", "uid", "schemaVersion", "panels", "templating", "time"],
    "properties": {
        "title": {"type": "string", "minLength": 1},
        "uid": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "panels": {"type": "array", "minItems": 1, "items": PANEL},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {"list": {"type": "array", "items": {"required": ["name", "type"]}}},
        },
        "time": {"type": "object", "required": ["from", "to"]},
    },
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def test_the_dashboard_has_the_structure_grafana_imports() -> None:
    import jsonschema

    board = dashboard()
    jsonschema.validate(board, DASHBOARD_SCHEMA)
    variables = {item["name"]: item for item in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = board["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= GRID_COLUMNS, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        for target in panel.get("targets", []):
            assert '{job=~"$job"}' in target["expr"], (panel["title"], "filter by the job")


def test_the_dashboard_covers_serving_and_the_pipeline() -> None:
    expressions = " ".join(
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])
    )
    for name in (
        "perennial_serve_requests_total",
        "perennial_serve_error_responses_total",
        "perennial_serve_request_seconds_bucket",
        "perennial_serve_model_version",
        "perennial_serve_swap_failures_total",
        "perennial_serve_live_backlog_rows",
        "perennial_last_training_timestamp_seconds",
        "perennial_gate_refusals_total",
        "perennial_monitored_batches",
        "perennial_champion_metric",
        "perennial_batch_estimated_metric",
    ):
        assert name in expressions, name
    assert "histogram_quantile(0.99" in expressions


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing in CI: `make promtool` installs Debian's prometheus")
        pytest.skip("no promtool: `make promtool` installs it (Debian's prometheus package)")
    return found


def run(*command: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    tool = promtool()
    checked = run(tool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(tool, "test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
    }
    tested_alerts = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts == tested_alerts, "every alert has a unit test"


def test_the_dashboard_queries_are_promql_promtool_parses(tmp_path: Path) -> None:
    """Each panel's query, with Grafana's variables filled in, as a recording rule: promtool
    parses it as Prometheus would."""
    tool = promtool()
    rules = [
        {
            "record": f"dashboard:panel{panel['id']}:{target['refId']}",
            "expr": target["expr"].replace("$__rate_interval", "5m").replace("$job", ".*"),
        }
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = run(tool, "check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
