"""Every committed benchmark result is written by its own script, never edited by hand: each
key of each `benchmarks/results/<name>.json` must be a key that `benchmarks/<name>.py` writes
(a string literal used as a dict key or a subscript in that script)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = sorted((ROOT / "benchmarks" / "results").glob("*.json"))


def written_keys(script: Path) -> set[str]:
    """String keys the script can write: dict-literal keys, `x["key"] = ...` targets and
    `dict(key=...)` keywords."""
    keys: set[str] = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Dict):
            keys |= {k.value for k in node.keys if isinstance(k, ast.Constant)}
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            keys.add(node.slice.value)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            keys |= {k.arg for k in node.keywords if k.arg}
    return {k for k in keys if isinstance(k, str)}


def test_there_are_results() -> None:
    assert RESULTS, "benchmarks/results/ holds no results"


@pytest.mark.parametrize("result", RESULTS, ids=lambda p: p.name)
def test_each_key_is_one_its_script_writes(result: Path) -> None:
    script = ROOT / "benchmarks" / f"{result.stem}.py"
    assert script.exists(), f"{result.name} has no script {script.name} that writes it"
    assert f'"{result.name}"' in script.read_text(), f"{script.name} does not write {result.name}"
    stray = set(json.loads(result.read_text())) - written_keys(script)
    assert not stray, f"{result.name}: keys {sorted(stray)} are not written by {script.name}"


def test_a_hand_added_key_is_caught(tmp_path: Path) -> None:
    script = tmp_path / "demo.py"
    script.write_text('out = {"wall_s": 1.0}\nout["ratio"] = 2.0\n')
    assert written_keys(script) == {"wall_s", "ratio"}
    assert {"wall_s", "measured"} - written_keys(script) == {"measured"}
