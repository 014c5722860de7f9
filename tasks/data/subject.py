"""The subject of an erasure: the rows `perennial forget --where "..."` names, in any stored copy.

The `--where` is the target expression's grammar (`tasks/core/expression.py`: comparisons, `in`
lists, & | ~; never evaluated as code). A column declared `hash` holds keyed hashes, not values:
a constant compared with it (`==`, `!=`, `in`, `not in`) is hashed with the same key before the
comparison, and any other use of it (`<`, arithmetic) is refused. Raw CSV is read as text: a
column the expression compares with a number is read as numbers for the comparison.
"""

from __future__ import annotations

import ast
import hashlib
import hmac

import pandas as pd

from tasks.core.config import PerennialConfig
from tasks.core.expression import ExpressionError, TargetExpression
from tasks.data.privacy import hash_value, privacy_key


class Subject:
    """A checked `--where`: its columns, and which rows of a frame it selects."""

    def __init__(self, config: PerennialConfig, where: str) -> None:
        self.where = where
        checked = TargetExpression(where)  # the grammar's refusals first, naming the piece
        hashed = set(config.privacy.declared("hash")) & set(checked.columns)
        key = privacy_key(config)
        if hashed:
            tree = _HashConstants(hashed, key).visit(ast.parse(checked.text, mode="eval"))
            checked = TargetExpression(ast.unparse(tree))
        self.expression, self.columns = checked, checked.columns
        # Names the erasure (its journal and audit entry) without its values: the same
        # `--where` always gives the same id, so a rerun resumes the erasure it interrupted.
        canonical = f"{config.dataset}\n{self.expression.text}".encode()
        self.id = hmac.new(key, canonical, hashlib.sha256).hexdigest()[:16]

    def holds_columns(self, frame: pd.DataFrame) -> bool:
        return all(column in frame.columns for column in self.columns)

    def mask(self, frame: pd.DataFrame) -> pd.Series:
        """The subject's rows (False everywhere when the frame lacks a column it names)."""
        if not self.holds_columns(frame):
            return pd.Series(False, index=frame.index)
        view = frame[self.columns].copy()
        for column in self.columns:  # text read from CSV: numbers compared as numbers
            if view[column].dtype == object or pd.api.types.is_string_dtype(view[column].dtype):
                given = view[column].replace("", None)
                numbers = pd.to_numeric(given, errors="coerce")
                if numbers.notna().any() and numbers.notna().sum() == given.notna().sum():
                    view[column] = numbers
        return self.expression.evaluate(view)


class _HashConstants(ast.NodeTransformer):
    """Constants compared with a hashed column become their keyed hash."""

    def __init__(self, hashed: set[str], key: bytes) -> None:
        self.hashed, self.key = hashed, key

    def _hash(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant) and not isinstance(node.value, bool):
            return ast.Constant(hash_value(self.key, node.value))
        if isinstance(node, ast.List | ast.Tuple | ast.Set):
            return ast.List(elts=[self._hash(item) for item in node.elts], ctx=ast.Load())
        raise ExpressionError(f"`{ast.unparse(node)}`: compare a hashed column with constants")

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        sides = [node.left, *node.comparators]
        names = [isinstance(s, ast.Name) and s.id in self.hashed for s in sides]
        if not any(names):
            return self.generic_visit(node)
        if len(node.ops) != 1 or not isinstance(
            node.ops[0], ast.Eq | ast.NotEq | ast.In | ast.NotIn
        ):
            raise ExpressionError(
                f"`{ast.unparse(node)}`: a hashed column (privacy.columns) can only be compared "
                "with == != in or not in: its stored values are keyed hashes"
            )
        left, right = sides
        if names[0] and not names[1]:
            return ast.Compare(left=left, ops=node.ops, comparators=[self._hash(right)])
        if names[1] and not names[0]:
            return ast.Compare(left=self._hash(left), ops=node.ops, comparators=[right])
        return node  # two hashed columns compare hash with hash
