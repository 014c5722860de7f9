"""The target expression: a small allowed grammar, parsed and evaluated here, never `eval`.

A config's `target.expression` (YAML or `PERENNIAL_TARGET__EXPRESSION`) names how the label is
made from the columns, e.g. `arr_delay > 15` or `(status == "late") | (delay >= 30)`. pandas'
`DataFrame.eval` would also run attribute access and calls, so a config could run code; this
module accepts only:

- column names, constants (numbers, strings, True/False), parentheses;
- comparisons `== != < <= > >=` (chains too), and `in` / `not in` a list of constants;
- boolean `& | ~` and `and or not` (element-wise on columns);
- arithmetic `+ - * /` on numbers and numeric columns.

Everything else is refused when the config loads, naming the piece (`calls are not allowed:
`__import__('os')``); a column the data lacks, arithmetic on a column of text (`name * 999999999`
would repeat each string until memory runs out) and any error evaluating it (`1/0 > 1`, `x > 'a'`
on numbers) are refused when the frame is known, in one line naming the expression.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

MAX_LENGTH = 1000  # a label rule is a line, not a program

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITHMETIC: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_LOGICAL: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
# What a refused node is called in the message (the rest: its class name, lower-cased).
_REFUSED = {
    ast.Call: "calls are",
    ast.Attribute: "attribute access is",
    ast.Subscript: "subscripts are",
    ast.Lambda: "lambdas are",
    ast.IfExp: "conditional expressions are",
    ast.NamedExpr: "assignments are",
    ast.Starred: "starred expressions are",
    ast.Dict: "dicts are",
    ast.ListComp: "comprehensions are",
    ast.SetComp: "comprehensions are",
    ast.DictComp: "comprehensions are",
    ast.GeneratorExp: "comprehensions are",
    ast.JoinedStr: "f-strings are",
}


class ExpressionError(ValueError):
    """A target expression outside the allowed grammar, or naming a column the data lacks: the
    config cannot be used (a rejected input, never a crash). A ValueError, so that the config's
    validator turns it into a field error; it does not know the config (which imports it)."""


class TargetExpression:
    """A checked expression: its column names, and its value on a frame."""

    def __init__(self, text: str, gives: str = "boolean") -> None:
        """`gives`: the kind of value the expression must give: `boolean` (a binary label or a
        row filter), `number` (a regression label) or `value` (a multiclass label: any)."""
        if not isinstance(text, str) or not text.strip():
            raise ExpressionError("give a boolean expression over columns, e.g. 'delay > 15'")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"{len(text)} characters; at most {MAX_LENGTH}")
        self.text = text.strip()
        self.gives = gives
        self.columns: list[str] = []
        try:
            self.body = ast.parse(self.text, mode="eval").body
            kind = self._check(self.body)
        except SyntaxError as exc:
            raise ExpressionError(
                f"not a valid expression ({exc.msg}): `{self.text[:80]}`"
            ) from None
        except (RecursionError, MemoryError):
            raise ExpressionError(f"nested too deeply: `{self.text[:60]}...`") from None
        if gives == "number" and kind not in ("number", "column"):
            raise ExpressionError(f"must give a number (e.g. `arr_delay / 60`): `{self.text}`")
        if gives == "boolean" and kind != "boolean":
            raise ExpressionError(
                f"must give a boolean (a comparison, or & | ~ of them; a boolean column `c` is "
                f"`c == True`): `{self.text}`"
            )

    # -- checking: returns the kind of value a node gives ---------------------------------------

    def _refuse(self, node: ast.AST, what: str) -> ExpressionError:
        piece = ast.get_source_segment(self.text, node) or ast.dump(node)[:60]
        return ExpressionError(f"{what} not allowed: `{piece}`")

    def _check(self, node: ast.expr) -> str:
        """'boolean', 'number', 'string' or 'column' (a column may hold any of them)."""
        if isinstance(node, ast.Name):
            if node.id not in self.columns:
                self.columns.append(node.id)
            return "column"
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                return "boolean"
            if isinstance(node.value, int | float):
                return "number"
            if isinstance(node.value, str):
                return "string"
            raise self._refuse(node, f"{type(node.value).__name__} constants are")
        if isinstance(node, ast.Compare):
            return self._check_compare(node)
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self._check_boolean(value)
            return "boolean"
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not | ast.Invert):
                self._check_boolean(node.operand)
                return "boolean"
            if isinstance(node.op, ast.USub | ast.UAdd):
                return self._check_number(node.operand)
        if isinstance(node, ast.BinOp):
            if type(node.op) in _LOGICAL:
                self._check_boolean(node.left)
                self._check_boolean(node.right)
                return "boolean"
            if type(node.op) in _ARITHMETIC:
                self._check_number(node.left)
                self._check_number(node.right)
                return "number"
            symbol = {ast.Pow: "**", ast.FloorDiv: "//", ast.Mod: "%"}.get(type(node.op), "")
            raise self._refuse(node, f"the operator {symbol or type(node.op).__name__} is")
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            raise self._refuse(node, "lists outside `in` / `not in` are")
        raise self._refuse(node, _REFUSED.get(type(node), f"{type(node).__name__} is"))

    def _check_boolean(self, node: ast.expr) -> None:
        if self._check(node) not in ("boolean", "column"):
            raise self._refuse(node, "& | ~ and/or/not take comparisons or boolean columns;")

    def _check_number(self, node: ast.expr) -> str:
        if self._check(node) not in ("number", "column"):
            raise self._refuse(node, "arithmetic on strings or booleans is")
        return "number"

    def _check_compare(self, node: ast.Compare) -> str:
        self._check(node.left)
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                self._constants(right)
            elif type(op) in _COMPARE:
                self._check(right)
            else:
                raise self._refuse(node, "`is` / `is not` are")
        return "boolean"

    def _constants(self, node: ast.expr) -> list[Any]:
        """The constants of an `in` list; anything else there is refused."""
        if not isinstance(node, ast.List | ast.Tuple | ast.Set):
            raise self._refuse(node, "`in` takes a list of constants, e.g. [1, 2]; this is")
        values: list[Any] = []
        for item in node.elts:
            negative = isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub)
            value = item.operand if isinstance(item, ast.UnaryOp) and negative else item
            if not isinstance(value, ast.Constant) or not isinstance(
                value.value, int | float | str
            ):
                raise self._refuse(item, "only constants go in an `in` list; this is")
            constant = value.value
            if negative and isinstance(constant, str):
                raise self._refuse(item, "a negative string is")
            values.append(-constant if negative and not isinstance(constant, str) else constant)
        return values

    # -- evaluating ------------------------------------------------------------------------------

    def check_columns(self, available: Any) -> None:
        """ExpressionError naming the columns the data lacks."""
        missing = [name for name in self.columns if name not in set(available)]
        if missing:
            raise ExpressionError(
                f"target.expression `{self.text}` names column(s) {missing} that the data lacks"
            )

    def evaluate(self, frame: pd.DataFrame) -> pd.Series:
        """The expression's value on each row: for a boolean expression a boolean Series (null
        -> False); otherwise the values as computed (nulls stay null)."""
        import pandas as pd

        self.check_columns(frame.columns)
        try:
            value = self._value(self.body, frame)
        except ExpressionError:
            raise
        except (
            Exception
        ) as exc:  # the data decides what fails (types, zeros): one line, not a trace
            cause = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise ExpressionError(
                f"target.expression `{self.text}` cannot be evaluated on this data "
                f"({type(exc).__name__}: {cause}): fix it in the dataset YAML"
            ) from None
        if not isinstance(value, pd.Series):  # a constant expression: the same for every row
            value = pd.Series(value, index=frame.index)
        if self.gives != "boolean":
            return value
        return value.fillna(False).astype(bool)

    def _value(self, node: ast.expr, frame: pd.DataFrame) -> Any:
        if isinstance(node, ast.Name):
            return frame[node.id]
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Compare):
            steps = []
            left = self._value(node.left, frame)
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn):
                    right = self._constants(comparator)
                    step = left.isin(right) if hasattr(left, "isin") else left in right
                    if isinstance(op, ast.NotIn):
                        step = ~step if hasattr(step, "index") else not step
                else:
                    right = self._value(comparator, frame)
                    step = _COMPARE[type(op)](left, right)
                steps.append(_as_boolean(step))
                left = right
            return functools.reduce(operator.and_, steps)  # `a < b < c`: both must hold
        if isinstance(node, ast.BoolOp):
            combine = operator.and_ if isinstance(node.op, ast.And) else operator.or_
            values = [_as_boolean(self._value(value, frame)) for value in node.values]
            combined = values[0]
            for value in values[1:]:
                combined = combine(combined, value)
            return combined
        if isinstance(node, ast.UnaryOp):
            operand = self._value(node.operand, frame)
            if isinstance(node.op, ast.Not | ast.Invert):
                boolean = _as_boolean(operand)
                return ~boolean if hasattr(boolean, "index") else not boolean
            return -operand if isinstance(node.op, ast.USub) else +operand
        assert isinstance(node, ast.BinOp)  # the check let nothing else through
        if type(node.op) in _LOGICAL:
            left_value = _as_boolean(self._value(node.left, frame))
            right_value = _as_boolean(self._value(node.right, frame))
            return _LOGICAL[type(node.op)](left_value, right_value)
        left_operand = self._numeric(node.left, self._value(node.left, frame))
        right_operand = self._numeric(node.right, self._value(node.right, frame))
        return _ARITHMETIC[type(node.op)](left_operand, right_operand)

    def _numeric(self, node: ast.expr, value: Any) -> Any:
        """An arithmetic operand, refused unless it holds numbers: on a column of text, `*` repeats
        each string (`name * 999999999` fills the memory) and `+` joins them."""
        import pandas as pd

        if isinstance(value, pd.Series) and not pd.api.types.is_numeric_dtype(value.dtype):
            piece = ast.get_source_segment(self.text, node) or "a column"
            raise ExpressionError(
                f"target.expression `{self.text}`: arithmetic on `{piece}`, which holds "
                f"{value.dtype} values, is not allowed: compare it with == or `in` instead"
            )
        return value


def _as_boolean(value: Any) -> Any:
    """Logical, not bitwise: `~` of an integer column would give -1 / -2, both true."""
    if hasattr(value, "fillna"):
        return value.fillna(False).astype(bool)
    return bool(value)


def parse(text: str, gives: str = "boolean") -> TargetExpression:
    """The checked expression, or ExpressionError naming the refused piece."""
    return TargetExpression(text, gives)
