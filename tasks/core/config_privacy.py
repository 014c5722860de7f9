"""Personal data a dataset may carry (`privacy:`): each declared column is dropped at landing,
before its bytes are kept, or replaced there by a keyed hash (HMAC-SHA256, the key in the secret
store: `tasks/core/secret_keys.py`), so that rows still join on it. A declared column is never a
feature. Any other column found to hold personal data fails the gate (tasks/data/personal_data.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.core.config_section import Section

PrivacyAction = Literal["drop", "hash"]


class PrivacyConfig(Section):
    columns: dict[str, PrivacyAction] = Field(
        default_factory=dict,
        description="Columns holding personal data, each `drop` (removed at landing) or `hash` "
        "(replaced at landing by a keyed HMAC-SHA256 of its value: joins and `perennial forget "
        "--where` still work). Never features.",
    )

    def declared(self, action: PrivacyAction | None = None) -> list[str]:
        """The declared columns (of one action), sorted."""
        return sorted(c for c, a in self.columns.items() if action is None or a == action)
