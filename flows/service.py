"""Served mode: `python -m flows.service up|down|status` (`make up` / `make down`).

`up` starts, on 127.0.0.1, a Prefect server (API + UI), an MLflow server (tracking + registry,
artifacts under PERENNIAL_HOME) and a process worker on the `perennial` work pool, then deploys
`prefect.yaml` once per dataset of `configs/`. State lives under `PERENNIAL_HOME/run` (0700):
`service.json` (PIDs, ports, URLs; no secrets), one log per process, `credentials.env` and `env`.

Locked down by default: the Prefect API asks for an auth string, checks CSRF tokens and allows
cross-origin calls from the UI's own origin only; MLflow runs its basic-auth app. Both
credentials are generated at the first `up` into `run/credentials.env` (0600, kept across
`down`); `run/env` (0600) holds them with the URLs, so `set -a; . run/env; set +a` points a
shell or the CLI at the service. Secrets reach processes through their environment, never argv.

Ports: PERENNIAL_PREFECT_PORT (default 4200) and PERENNIAL_MLFLOW_PORT (default 5000); 0, or a
default port already taken, picks a free one. With PERENNIAL_DB_URL=postgresql://user:pw@host/db
Prefect and MLflow keep their state in PostgreSQL databases `<db>_prefect` and `<db>_mlflow`
(created if missing) instead of SQLite files in PERENNIAL_HOME. The password goes to the two
servers as PGPASSWORD and is written nowhere.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORK_POOL = "perennial"
READY_TIMEOUT_S = 180.0  # servers take 15-25 s alone, much longer on a loaded 2-core machine
STOP_GRACE_S = 10.0  # then SIGKILL: the worker ignores SIGTERM for more than 15 s (NOTES)


DATASET_TOKEN = "${dataset}"  # prefect.yaml writes each deployment once, for every dataset
WINDOW_TOKEN = "${alert_window_seconds}"  # the dataset's alerts.window_minutes, in seconds
CREDENTIALS = "credentials.env"
MLFLOW_USER = "perennial"
LEASES_ON_DISK = "prefect.server.concurrency.lease_storage.filesystem"


class ServiceError(RuntimeError):
    """A served-mode process that would not start, or state that does not match the machine."""


def home_dir() -> Path:
    return Path(os.environ.get("PERENNIAL_HOME") or ROOT / ".perennial").resolve()


def run_dir(home: Path) -> Path:
    return home / "run"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def choose_port(variable: str, default: int) -> int:
    wanted = int(os.environ.get(variable, default))
    if wanted == 0:
        return free_port()
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", wanted))
        except OSError:
            return free_port()  # the default is taken (another checkout's service?)
    return wanted


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
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # about 500 MB less (NOTES)
        "DO_NOT_TRACK": "1",
    }


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
    the environment): `make up` and the CLI's shared local server both start it so."""
    return [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]


def write_private(path: Path, text: str) -> None:
    """Write a file only the user can read (0600), whatever the umask, replacing it whole."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


def sourceable_env(values: dict[str, str]) -> str:
    """`KEY=value` lines for `set -a; . run/env; set +a`: each value shell-quoted, so that a home
    path with a space, `$(...)` or a backquote is read as text, never run."""
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def credentials(home: Path) -> dict[str, str]:
    """The served stack's credentials, generated once into `run/credentials.env` (0600): the
    Prefect API auth string, MLflow's admin user and password, MLflow's session key, and the
    bearer token of `perennial serve`. Kept across `down`; a missing one is added."""
    path = run_dir(home) / CREDENTIALS
    known = read_env_file(path) if path.is_file() else {}
    wanted = {
        "PREFECT_API_AUTH_STRING": lambda: secrets.token_urlsafe(32),
        "MLFLOW_TRACKING_USERNAME": lambda: MLFLOW_USER,
        "MLFLOW_TRACKING_PASSWORD": lambda: secrets.token_urlsafe(32),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": lambda: secrets.token_urlsafe(32),
        "PERENNIAL_SERVE_TOKEN": lambda: secrets.token_urlsafe(32),
    }
    missing = {key: make() for key, make in wanted.items() if key not in known}
    if missing:
        from tasks.core.private_state import private_folder

        private_folder(path.parent)
        known |= missing
        write_private(path, "".join(f"{key}={value}\n" for key, value in known.items()))
    return known


def client_env(home: Path) -> dict[str, str]:
    """Everything a client (CLI, worker, test) needs to talk to the running stack: the URLs of
    `service.json` and the credentials. What `run/env` holds."""
    state = read_state(home)
    if state is None:
        raise ServiceError(f"no served stack in {home}: run `make up`")
    wanted = (
        "PREFECT_API_AUTH_STRING",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "PERENNIAL_SERVE_TOKEN",
    )
    secret = credentials(home)
    return {**state["env"], **{key: secret[key] for key in wanted}}


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


def served_datasets(folder: Path | None = None) -> list[str]:
    """Datasets to serve: every YAML of the configs folder; each must load, and name itself as
    its file does (the drift trigger matches the config's dataset, the parameter the file)."""
    from tasks.core.config import configs_dir, dataset_names, load_config
    from tasks.core.config_section import ConfigError

    root = folder or configs_dir()
    names = dataset_names(root)
    if not names:
        raise ServiceError(f"no dataset YAML in {root}: add one (configs/flights.yaml is the demo)")
    for name in names:
        try:
            config = load_config(root / f"{name}.yaml")
        except ConfigError as exc:
            raise ServiceError(f"cannot serve {name}: {exc}") from None
        if config.dataset != name:
            raise ServiceError(
                f"{root / name}.yaml names dataset {config.dataset!r}: rename the file "
                f"{config.dataset}.yaml so deployments, triggers and events agree"
            )
    return names


def alert_windows(datasets: list[str]) -> dict[str, float]:
    """Each dataset's de-duplication window of alerts and drift retrains, in minutes."""
    from tasks.core.config import dataset_config

    return {name: dataset_config(name).alerts.window_minutes for name in datasets}


def render_deployments(
    template: str, datasets: list[str], windows: dict[str, float] | None = None
) -> str:
    """prefect.yaml with each deployment repeated for every dataset (`${dataset}` replaced, and
    `${alert_window_seconds}` by the dataset's window: `windows`, in minutes, default 60)."""
    import yaml

    document = yaml.safe_load(template)

    def replace(value: Any, name: str) -> Any:
        if value == WINDOW_TOKEN:
            return round((windows or {}).get(name, 60.0) * 60)
        if isinstance(value, str):
            return value.replace(DATASET_TOKEN, name)
        if isinstance(value, list):
            return [replace(item, name) for item in value]
        if isinstance(value, dict):
            return {key: replace(item, name) for key, item in value.items()}
        return value

    document["deployments"] = [
        replace(copy.deepcopy(deployment), name)
        for deployment in document["deployments"]
        for name in datasets
    ]
    return yaml.safe_dump(document, sort_keys=False)


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux): tells our PID from a recycled one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def open_log(logs: Path, name: str) -> Any:
    """A process's log, appended to, readable by the user only."""
    return os.fdopen(
        os.open(logs / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab"
    )


def is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def spawn(name: str, command: list[str], env: dict[str, str], logs: Path) -> dict[str, Any]:
    """Start a process in its own session (so Ctrl-C in the shell leaves it running)."""
    with open_log(logs, name) as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return {"pid": process.pid, "ticks": start_ticks(process.pid), "command": command}


def alive(entry: dict[str, Any]) -> bool:
    if is_zombie(entry["pid"]):  # exited, not yet reaped by us (its parent)
        return False
    ticks = start_ticks(entry["pid"])
    if ticks is None:  # no /proc: fall back to "some process has this PID"
        try:
            os.kill(entry["pid"], 0)
        except OSError:
            return False
        return entry.get("ticks") is None
    return ticks == entry.get("ticks")


def wait_ready(
    name: str,
    url: str,
    entry: dict[str, Any],
    logs: Path,
    headers: dict[str, str],
    answers: tuple[int, ...] = (200,),
) -> None:
    """Poll `url` until it answers with one of `answers` (a scoring service with no champion
    yet answers 503, and is up all the same)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive(entry):
            tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"{name} exited before it was ready; end of its log:\n{tail}")
        try:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=2) as reply:
                if reply.status in answers:
                    return
        except urllib.error.HTTPError as error:
            if error.code in answers:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServiceError(f"{name} not ready at {url} after {READY_TIMEOUT_S:.0f} s: see {logs}")


def run_cli(command: list[str], env: dict[str, str], logs: Path, name: str) -> None:
    with open_log(logs, name) as log:
        done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = (logs / f"{name}.log").read_text(errors="replace")[-3000:]
        raise ServiceError(f"`{' '.join(command)}` failed ({done.returncode}):\n{tail}")


def read_state(home: Path) -> dict[str, Any] | None:
    path = run_dir(home) / "service.json"
    return json.loads(path.read_text()) if path.is_file() else None


def up(home: Path) -> dict[str, Any]:
    """Start everything (or report what is already running) and return the state."""
    state = read_state(home)
    if state and all(alive(entry) for entry in state["processes"].values()):
        return state
    if state:
        down(home)  # a half-dead service: clear it before starting afresh
    from tasks.core.private_state import private_file, private_folder

    datasets = served_datasets()
    logs = run_dir(home)
    private_folder(logs)
    logs.chmod(0o700)
    private_folder(home / "prefect")
    prefect_port = choose_port("PERENNIAL_PREFECT_PORT", 4200)
    mlflow_port = choose_port("PERENNIAL_MLFLOW_PORT", 5000)
    db_url = os.environ.get("PERENNIAL_DB_URL")
    urls = database_urls(db_url, home)
    if not db_url:  # the servers would create their SQLite files with the umask's mode
        for sqlite_file in sqlite_files(home).values():
            private_file(sqlite_file)
    password = database_password(db_url)
    if db_url:
        create_databases(urls, password)
    secret = credentials(home)
    extra = service_env(home, prefect_port, mlflow_port)
    inherited = {k: v for k, v in os.environ.items() if k != "PERENNIAL_DB_URL"}
    client = {
        **inherited,
        **extra,
        **{k: secret[k] for k in secret if not k.startswith("MLFLOW_F")},
    }
    database = {"PGPASSWORD": password} if password else {}
    prefect_server_env = {
        **client,
        **server_settings(prefect_port),
        **database,
        "PREFECT_SERVER_API_AUTH_STRING": secret["PREFECT_API_AUTH_STRING"],
        "PREFECT_API_DATABASE_CONNECTION_URL": urls["prefect"],
    }
    mlflow_server_env = {
        **client,
        **database,
        "MLFLOW_AUTH_CONFIG_PATH": str(mlflow_auth_config(home, secret)),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secret["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        "MLFLOW_BACKEND_STORE_URI": urls["mlflow"],  # from the environment: never in argv
    }
    processes: dict[str, dict[str, Any]] = {}
    state = {
        "home": str(home),
        "processes": processes,
        "prefect_ui": f"http://127.0.0.1:{prefect_port}",
        "mlflow_ui": f"http://127.0.0.1:{mlflow_port}",
        "datasets": datasets,
        "env": extra,
        "credentials": str(logs / CREDENTIALS),
        "databases": {k: v.split("@")[-1] for k, v in urls.items()},
        "scoring": {},
    }
    state_path = logs / "service.json"
    try:
        processes["prefect-server"] = spawn(
            "prefect-server",
            prefect_server_command(prefect_port),
            prefect_server_env,
            logs,
        )
        processes["mlflow-server"] = spawn(
            "mlflow-server",
            [
                *(str(BIN / "mlflow"), "server", "--app-name", "basic-auth"),
                *("--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"),
                *("--artifacts-destination", str(home / "mlartifacts")),
            ],
            mlflow_server_env,
            logs,
        )
        write_private(state_path, json.dumps(state, indent=2))  # so `down` works from here on
        auth_string = base64.b64encode(secret["PREFECT_API_AUTH_STRING"].encode()).decode()
        prefect_auth = {"Authorization": f"Basic {auth_string}"}
        wait_ready(
            "prefect-server",
            f"{extra['PREFECT_API_URL']}/health",
            processes["prefect-server"],
            logs,
            prefect_auth,
        )
        token = base64.b64encode(
            f"{secret['MLFLOW_TRACKING_USERNAME']}:{secret['MLFLOW_TRACKING_PASSWORD']}".encode()
        ).decode()
        wait_ready(
            "mlflow-server",
            f"{state['mlflow_ui']}/health",
            processes["mlflow-server"],
            logs,
            {"Authorization": f"Basic {token}"},
        )
        prefect = [str(BIN / "prefect"), "--no-prompt"]
        pool = [*prefect, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"]
        run_cli(pool, client, logs, "deploy")
        rendered = logs / "prefect.yaml"
        write_private(
            rendered,
            render_deployments(
                (ROOT / "prefect.yaml").read_text(), datasets, alert_windows(datasets)
            ),
        )
        run_cli(
            [*prefect, "deploy", "--all", "--prefect-file", str(rendered)], client, logs, "deploy"
        )
        processes["worker"] = spawn(
            "worker",
            [*prefect, "worker", "start", "--pool", WORK_POOL, "--type", "process"],
            client,
            logs,
        )
        write_private(state_path, json.dumps(state, indent=2))
        start_scoring(state, client, logs)
        write_private(state_path, json.dumps(state, indent=2))
    except BaseException:
        down(home)
        raise
    write_private(logs / "env", sourceable_env(client_env(home)))
    return state


def start_scoring(state: dict[str, Any], env: dict[str, str], logs: Path) -> None:
    """`perennial serve` for each dataset, on its own free port, with a bearer token (its /health
    answers 503 until the dataset has a champion: that is up, not failed)."""
    from tasks.core.config import configs_dir

    folder = configs_dir()
    for name in state["datasets"]:
        port = free_port()
        process = f"serve-{name}"
        state["processes"][process] = spawn(
            process,
            [
                *(str(BIN / "perennial"), "serve", "--config", str(folder / f"{name}.yaml")),
                *("--host", "127.0.0.1", "--port", str(port)),
            ],
            env,
            logs,
        )
        state["scoring"][name] = f"http://127.0.0.1:{port}"
    for name, url in state["scoring"].items():
        entry = state["processes"][f"serve-{name}"]
        wait_ready(f"serve-{name}", f"{url}/health", entry, logs, {}, answers=(200, 503))


def stop(entry: dict[str, Any], grace: float = STOP_GRACE_S) -> None:
    """SIGTERM the process's group (it leads its own session), then SIGKILL after `grace`."""
    if not alive(entry):
        return
    pid = entry["pid"]
    for signum, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, signum)  # the group: a server's own workers go with it
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap it if it is our child (`up` failing half-way), else poll
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                if not alive(entry):
                    return
            time.sleep(0.2)


def down(home: Path) -> list[str]:
    """Stop the processes recorded by `up` (worker first), and forget them."""
    state = read_state(home)
    if state is None:
        return []
    stopped = []
    scoring = [name for name in state["processes"] if name.startswith("serve-")]
    for name in (*scoring, "worker", "mlflow-server", "prefect-server"):
        entry = state["processes"].get(name)
        if entry is not None:
            stop(entry)
            stopped.append(f"{name} (pid {entry['pid']})")
    for leftover in ("service.json", "env", "mlflow-auth.ini", "prefect.yaml"):
        (run_dir(home) / leftover).unlink(missing_ok=True)
    return stopped


def status(home: Path) -> dict[str, Any]:
    state = read_state(home)
    if state is None:
        return {"running": False, "home": str(home)}
    health = {name: alive(entry) for name, entry in state["processes"].items()}
    return {**state, "running": all(health.values()), "alive": health}


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or args[0] not in ("up", "down", "status", "render"):
        print("usage: python -m flows.service up|down|status|render", file=sys.stderr)
        return 2
    home = home_dir()
    if args[0] == "render":
        datasets = served_datasets()
        template = (ROOT / "prefect.yaml").read_text()
        print(render_deployments(template, datasets, alert_windows(datasets)), end="")
        return 0
    if args[0] == "up":
        try:
            state = up(home)
        except ServiceError as exc:
            print(f"make up failed: {exc}", file=sys.stderr)
            return 1
        names = ", ".join(state["datasets"])
        print(f"Prefect UI:  {state['prefect_ui']}  (deployments for {names}; sign in with")
        print(f"             PREFECT_API_AUTH_STRING from {state['credentials']})")
        print(f"MLflow UI:   {state['mlflow_ui']}  (user and password in the same file)")
        for name, url in state["scoring"].items():
            print(f"scoring:     {url}/predict  ({name}; bearer PERENNIAL_SERVE_TOKEN)")
        print(f"logs and PIDs in {run_dir(home)}; `set -a; . {run_dir(home) / 'env'}; set +a`")
    elif args[0] == "down":
        stopped = down(home)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        print(json.dumps(status(home), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
