"""Prefect artifacts: what a person reads in the UI (gate reports, model cards, drift tables)."""

from __future__ import annotations

import re


def artifact_key(name: str) -> str:
    """A Prefect artifact key made from a name that holds dataset and batch ids: Prefect takes
    only lowercase letters, digits and dashes, so anything else becomes a dash."""
    return re.sub(r"[^a-z0-9-]", "-", name.lower())
