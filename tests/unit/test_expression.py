"""The target expression is a small allowed grammar, checked at config load and evaluated by our
own evaluator: a YAML or PERENNIAL_TARGET__EXPRESSION can no longer run code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tasks.core.config import load_config
from tasks.core.config_section import ConfigError
from tasks.core.expression import ExpressionError, parse
from tasks.data.features import label
from tests.conftest import FLIGHTS

ATTACK = "__import__('os').system('touch {canary}')"


def rows() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "delay": np.where(rng.random(200) < 0.1, np.nan, rng.normal(10, 20, 200).round(1)),
            "distance": rng.integers(100, 3000, 200),
            "carrier": rng.choice(["UA", "AA", "DL"], 200),
            "flag": rng.random(200) < 0.5,
        }
    )


@pytest.mark.parametrize(
    "text",
    [
        "delay > 15",
        "delay >= 15",
        "(delay > 15) | (carrier == 'UA')",
        "(delay > 15) & ~(carrier in ['AA', 'DL'])",
        "carrier not in ['AA']",
        "delay * 2 - distance / 100 > 3",
        "-5 < delay < 30",
        "delay > 15 and carrier != 'DL'",
        "not (delay <= 15) or (flag == True)",
    ],
)
def test_allowed_expressions_give_what_pandas_gave(text: str) -> None:
    frame = rows()
    # pandas' own eval is the reference here, in a test only, on a fixed expression
    expected = np.asarray(frame.eval(text.replace("not (", "~(")), dtype=bool)
    assert parse(text).evaluate(frame).tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("__import__('os').system('id')", "calls are not allowed: `__import__('os').system('id')`"),
        ("delay.__class__ == 1", "attribute access is not allowed: `delay.__class__`"),
        ("delay[0] > 1", "subscripts are not allowed"),
        ("delay ** 99999 > 1", "the operator ** is not allowed"),
        ("'x' * 10 == carrier", "arithmetic on strings or booleans is not allowed"),
        ("(lambda: 1)() == 1", "calls are not allowed"),
        ("delay if delay else 1", "conditional expressions are not allowed"),
        ("carrier in carrier", "`in` takes a list of constants"),
        ("delay in [distance]", "only constants go in an `in` list"),
        ("delay is None", "`is` / `is not` are not allowed"),
        ("delay", "must give a boolean"),
        ("delay > ", "not a valid expression"),
        ("delay > 1; import os", "not a valid expression"),
        ("~" * 900 + "(delay > 1)", "nested too deeply"),
    ],
)
def test_everything_else_is_refused_naming_the_piece(text: str, refusal: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        parse(text)
    assert refusal in str(refused.value)


def test_unknown_columns_are_refused_when_the_frame_is_known() -> None:
    config = load_config(FLIGHTS)
    frame = pd.DataFrame({"dep_delay": [1.0]})
    with pytest.raises(ExpressionError, match=r"column\(s\) \['arr_delay'\] that the data lacks"):
        label(frame, config)


def test_config_with_code_in_the_expression_fails_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = tmp_path / "ran"
    monkeypatch.setenv("PERENNIAL_TARGET__EXPRESSION", ATTACK.format(canary=canary))
    with pytest.raises(ConfigError, match=r"target\.expression': calls are not allowed"):
        load_config(FLIGHTS)
    assert not canary.exists()


def test_cli_refuses_code_in_the_expression_in_one_line(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    for config_text, env in (
        # from the environment ...
        (FLIGHTS.read_text(), {"PERENNIAL_TARGET__EXPRESSION": ATTACK.format(canary=canary)}),
        # ... and from the YAML
        (
            FLIGHTS.read_text().replace(
                'expression: "arr_delay > 15"', f'expression: "{ATTACK.format(canary=canary)}"'
            ),
            {},
        ),
    ):
        path = tmp_path / "flights.yaml"
        path.write_text(config_text)
        result = CliRunner().invoke(
            app, ["status", "--config", str(path)], env={"PERENNIAL_HOME": str(tmp_path), **env}
        )
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1, lines
        assert "target.expression': calls are not allowed: `__import__('os')" in lines[0]
        assert str(path) in lines[0]
    assert not canary.exists()


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("carrier * 3 == 'UAUAUA'", "arithmetic on `carrier`, which holds"),
        ("carrier + carrier == 'UAUA'", "arithmetic on `carrier`, which holds"),
        ("1 / 0 > 1", "ZeroDivisionError"),
        ("distance > 'a'", "TypeError"),
        ("-carrier == 'UA'", "TypeError"),
    ],
)
def test_errors_on_the_data_are_one_line_naming_the_expression(text: str, refusal: str) -> None:
    with pytest.raises(ExpressionError) as refused:
        parse(text).evaluate(rows())
    message = str(refused.value)
    assert refusal in message and f"`{text}`" in message
    assert "\n" not in message


def test_repeating_text_until_memory_runs_out_is_refused() -> None:
    # Empty strings, so that an evaluator without the check repeats them harmlessly (and this
    # test fails) instead of taking the machine's memory.
    frame = pd.DataFrame({"carrier": ["", ""]})
    with pytest.raises(ExpressionError, match="arithmetic on `carrier`"):
        parse("carrier * 999999999 == 'a'").evaluate(frame)
