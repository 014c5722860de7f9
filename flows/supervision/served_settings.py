"""What served mode starts its processes with: where its state lives, the databases of Prefect
and MLflow, the environment every process sees, and the credentials.

State lives under `PERENNIAL_HOME/run` (0700). The credentials are generated at the first
`up` into `run/credentials.env` (0600, kept across `down`). Secrets reach processes through
their environment, never argv; the model signing key (`PERENNIAL_MODEL_SIGNING_KEY`) only those
that train and score (worker, `perennial serve`, the CLI through `run/env`), never the MLflow
server whose registry it guards, nor the Prefect server.

With PERENNIAL_DB_URL=postgresql://user:pw@host/db Prefect and MLflow keep their state in
PostgreSQL databases `<db>_prefect` and `<db>_mlflow` (created if missing) instead of SQLite
files in PERENNIAL_HOME. The password goes to the two servers as PGPASSWORD and is written
nowhere.
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from flows.supervision.processes import ROOT, write_private
from tasks.registry.model_signing import SIGNING_KEY_VARIABLE

CREDENTIALS = "credentials.env"
MLFLOW_USER = "perennial"
SIGNING_KEY = SIGNING_KEY_VARIABLE  # the key that signs registered models


class ServiceError(RuntimeError):
    """A served-mode process that would not start, or state that does not match the machine."""


def home_dir() -> Path:
    return Path(os.environ.get("PERENNIAL_HOME") or ROOT / ".perennial").resolve()


def run_dir(home: Path) -> Path:
    return home / "run"


def database_urls(db_url: str | None, home: Path) -> dict[str, str]:
    """Back-end URLs for Prefect and MLflow: SQLite in home, or PostgreSQL databases. The URLs
    never carry a password (see `database_password`)."""
    if not db_url:
        return {
            "prefect": f"sqlite+aiosqlite:///{sqlite_files(home)['prefect']}",
            "mlflow": f"sqlite:///{sqlite_files(home)['mlflow']}",
        }
    parts = urlsplit(db_url)
    if not parts.scheme.startswith("postgresql"):
        raise ServiceError(
            f"PERENNIAL_DB_URL ({parts.scheme or 'no scheme'}://...): expected "
            "postgresql://user:password@host:port/db"
        )
    base = parts.path.strip("/") or "perennial"
    netloc = f"{parts.username}@" if parts.username else ""
    netloc += parts.hostname or "127.0.0.1"
    netloc += f":{parts.port}" if parts.port else ""

    def url(scheme: str, name: str) -> str:
        return urlunsplit((scheme, netloc, f"/{base}_{name}", parts.query, ""))

    return {
        "prefect": url("postgresql+asyncpg", "prefect"),
        "mlflow": url("postgresql", "mlflow"),
    }


def sqlite_files(home: Path) -> dict[str, Path]:
    """The SQLite databases of the served stack without PERENNIAL_DB_URL: Prefect's, MLflow's,
    and MLflow's users (`mlflow_auth_config`)."""
    return {
        "prefect": home / "prefect" / "prefect.db",
        "mlflow": home / "mlflow.db",
        "mlflow_auth": home / "mlflow-auth.db",
    }


def database_password(db_url: str | None) -> str | None:
    """The password of PERENNIAL_DB_URL: handed to the servers as PGPASSWORD (libpq, psycopg and
    asyncpg all read it), so that no URL on a command line, on disk or in a log carries it."""
    return urlsplit(db_url).password if db_url else None


def create_databases(urls: dict[str, str], password: str | None) -> None:
    """Create the PostgreSQL databases that do not exist yet (on the server's `postgres` db)."""
    import psycopg
    from psycopg import sql

    for url in urls.values():
        parts = urlsplit(url.replace("+asyncpg", ""))
        name = parts.path.strip("/")
        admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
        with psycopg.connect(admin, password=password, autocommit=True) as connection:
            found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                # Quoted by psycopg: a name from PERENNIAL_DB_URL is data, never SQL.
                connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def service_env(home: Path, prefect_port: int, mlflow_port: int) -> dict[str, str]:
    """What the servers, the worker and the flow runs it starts all see (no secrets)."""
    api = f"http://127.0.0.1:{prefect_port}/api"
    return {
        "PERENNIAL_HOME": str(home),
        "PERENNIAL_PROJECT_DIR": str(ROOT),  # prefect.yaml's pull step reads it at run time
        "PERENNIAL_MLFLOW_URI": f"http://127.0.0.1:{mlflow_port}",
        "PREFECT_API_URL": api,
        "PREFECT_UI_API_URL": api,  # else the UI calls port 4200 and shows nothing
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # pick up runs within ~1 s (default 10)
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # No job runner beside the MLflow server (its jobs score GenAI traces; Perennial has
        # none): about 500 MB less.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "DO_NOT_TRACK": "1",
    }


def sourceable_env(values: dict[str, str]) -> str:
    """`KEY=value` lines for `set -a; . run/env; set +a`: each value shell-quoted, so that a home
    path with a space, `$(...)` or a backquote is read as text, never run."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def credentials(home: Path) -> dict[str, str]:
    """The served stack's credentials, generated once into `run/credentials.env` (0600): the
    Prefect API auth string, MLflow's admin user and password, MLflow's session key, the
    bearer token of `perennial serve`, and the key that signs registered models. Kept across
    `down`; a missing one is added."""
    path = run_dir(home) / CREDENTIALS
    known = read_env_file(path) if path.is_file() else {}
    wanted = {
        "PREFECT_API_AUTH_STRING": lambda: secrets.token_urlsafe(32),
        "MLFLOW_TRACKING_USERNAME": lambda: MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": lambda: secrets.token_urlsafe(32),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": lambda: secrets.token_urlsafe(32),
        "PERENNIAL_SERVE_TOKEN": lambda: secrets.token_urlsafe(32),
        SIGNING_KEY: lambda: secrets.token_urlsafe(32),
    }
    missing = {key: make() for key, make in wanted.items() if key not in known}
    if missing:
        from tasks.core.private_state import private_folder

        private_folder(path.parent)
        known |= missing
        write_private(path, "".join(f"{key}={value}\n" for key, value in known.items()))
    return known


def mlflow_auth_config(home: Path, secret: dict[str, str]) -> Path:
    """MLflow's basic-auth settings (its admin is created from them at the first start)."""
    path = run_dir(home) / "mlflow-auth.ini"
    write_private(
        path,
        "[mlflow]\n"
        "default_permission = NO_PERMISSIONS\n"
        f"database_uri = sqlite:///{sqlite_files(home)['mlflow_auth']}\n"
        f"admin_username = {secret['MLFLOW_TRACKING_USERNAME']}\n"
        f"admin_password = {secret['MLFLOW_TRACKING_PASSWORD']}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Checking the password hash costs about 0.4 s a request; cache a good one for a minute.
        "auth_cache_ttl_seconds = 60\n",
    )
    return path
