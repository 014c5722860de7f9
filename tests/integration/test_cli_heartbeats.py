"""Flow-run heartbeats of CLI commands: the long ones (train, search, demo) send them, so that
Prefect can tell a crashed run; the short ones do not pay for the heartbeat thread's join."""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow

from flows.cli.runner import run as run_flow

pytestmark = [pytest.mark.integration]


@flow(name="heartbeat-probe")
def heartbeat_probe() -> Any:
    from prefect.settings import get_current_settings

    return get_current_settings().flows.heartbeat_frequency


def test_short_commands_send_no_heartbeats_and_long_ones_do(prefect_api_url: str) -> None:
    assert run_flow(heartbeat_probe) is None
    assert run_flow(heartbeat_probe, heartbeats=True) == 180  # Prefect's default
