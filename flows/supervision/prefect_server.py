"""The Prefect server as both served mode (`make up`) and the CLI's shared local server start
it: on loopback, CSRF tokens on, cross-origin calls from its own UI only, concurrency leases
on disk. Its API auth string goes through the environment, never argv."""

from __future__ import annotations

from flows.supervision.processes import BIN

LEASES_ON_DISK = "prefect.server.concurrency.lease_storage.filesystem"


def server_settings(prefect_port: int) -> dict[str, str]:
    """The Prefect server's lock-down: CSRF tokens on, cross-origin calls only from its UI."""
    return {
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": f"http://127.0.0.1:{prefect_port}",
        "PREFECT_SERVER_API_CORS_ALLOWED_METHODS": "GET,POST,PUT,PATCH,DELETE,OPTIONS",
        # Leases of concurrency slots (the registry lock, one training run at a time) on disk,
        # not in memory: a restarted server still expires a dead holder's slot instead of
        # keeping it taken for good.
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": LEASES_ON_DISK,
    }


def prefect_server_command(port: int) -> list[str]:
    """The Prefect server on loopback (its lock-down is in `server_settings`, its auth string in
    the environment)."""
    return [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
