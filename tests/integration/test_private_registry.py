"""The local MLflow registry is private whatever the umask: `perennial` without a tracking
server keeps MLflow's SQLite file (and its WAL) in the home, 0600. The rest of local state:
tests/unit/test_private_state.py."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest


@pytest.mark.slow
def test_the_local_mlflow_registry_is_private(tmp_path: Path, permissive_umask: int) -> None:
    """`perennial` without a server: MLflow's SQLite file in the home, and its WAL, 0600."""
    from tasks.core.config import load_config
    from tasks.registry.client import connect
    from tests.conftest import FLIGHTS

    home = tmp_path / "home"
    connect(load_config(FLIGHTS).model_copy(update={"home": str(home)}))
    databases = list(home.glob("mlflow.db*"))
    assert databases, list(home.iterdir())
    assert [p for p in databases if stat.S_IMODE(p.stat().st_mode) & 0o077] == []
