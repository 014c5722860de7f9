"""What flows return: each a dataclass, defined beside the code that builds it, and this one
JSON form of them (what `perennial <command> --json` prints and what is stored of a summary).

A result's JSON is its fields, in order, nested results as objects. A field declared as
`field(default=None, metadata=ABSENT_IF_NONE)` is left out while it is None: some results hold
a key only in some cases (a gated batch's failures, the challenger of a scoring), and the JSON
that people and tests parse keeps that shape. A field that may be None and still belongs in the
JSON (as null) is declared plainly.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_ABSENT = "perennial.absent_if_none"
ABSENT_IF_NONE = {_ABSENT: True}


def jsonable(value: Any) -> Any:
    """`value` as plain JSON data: dataclasses as dicts of their fields (without the absent
    ones), or as their `json_form()` when they have one; lists, tuples and dicts walked through,
    anything else as it is."""
    if hasattr(value, "json_form") and not isinstance(value, type):
        return jsonable(value.json_form())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: jsonable(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if not (field.metadata.get(_ABSENT) and getattr(value, field.name) is None)
        }
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value
