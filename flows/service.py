"""Served mode: `python -m flows.service up|down|status` (`make up` / `make down`).

`up` starts, on 127.0.0.1, a Prefect server (API + UI), an MLflow server (tracking + registry,
artifacts under PERENNIAL_HOME) and a process worker on the `perennial` work pool, then deploys
`prefect.yaml`. State lives under `PERENNIAL_HOME/run`: `service.json` (PIDs, ports, URLs),
one log per process, and `env` (PREFECT_API_URL, PERENNIAL_MLFLOW_URI, ...: `set -a; . run/env`
points a shell or the CLI at the service). `down` stops exactly the PIDs in `service.json`.

Ports: PERENNIAL_PREFECT_PORT (default 4200) and PERENNIAL_MLFLOW_PORT (default 5000); 0, or a
default port already taken, picks a free one. With PERENNIAL_DB_URL=postgresql://user@host:port/db
Prefect and MLflow keep their state in PostgreSQL databases `<db>_prefect` and `<db>_mlflow`
(created if missing) instead of SQLite files in PERENNIAL_HOME.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORK_POOL = "perennial"
READY_TIMEOUT_S = 180.0  # servers take 15-25 s alone, much longer on a loaded 2-core machine
STOP_GRACE_S = 10.0  # then SIGKILL: the worker ignores SIGTERM for more than 15 s (NOTES)


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
    """Back-end URLs for Prefect and MLflow: SQLite in home, or PostgreSQL databases."""
    if not db_url:
        return {
            "prefect": f"sqlite+aiosqlite:///{home / 'prefect' / 'prefect.db'}",
            "mlflow": f"sqlite:///{home / 'mlflow.db'}",
        }
    parts = urlsplit(db_url)
    if not parts.scheme.startswith("postgresql"):
        raise ServiceError(f"PERENNIAL_DB_URL={db_url!r}: expected postgresql://user@host:port/db")
    base = parts.path.strip("/") or "perennial"

    def url(scheme: str, name: str) -> str:
        return urlunsplit((scheme, parts.netloc, f"/{base}_{name}", parts.query, ""))

    return {
        "prefect": url("postgresql+asyncpg", "prefect"),
        "mlflow": url("postgresql", "mlflow"),
    }


def create_databases(urls: dict[str, str]) -> None:
    """Create the PostgreSQL databases that do not exist yet (on the server's `postgres` db)."""
    import psycopg

    for url in urls.values():
        parts = urlsplit(url.replace("+asyncpg", ""))
        name = parts.path.strip("/")
        admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
        with psycopg.connect(admin, autocommit=True) as connection:
            found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                connection.execute(f'CREATE DATABASE "{name}"')


def service_env(home: Path, prefect_port: int, mlflow_port: int) -> dict[str, str]:
    """What the servers, the worker and the flow runs it starts all see."""
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


def start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux): tells our PID from a recycled one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def spawn(name: str, command: list[str], env: dict[str, str], logs: Path) -> dict[str, Any]:
    """Start a process in its own session (so Ctrl-C in the shell leaves it running)."""
    with open(logs / f"{name}.log", "ab") as log:
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
    ticks = start_ticks(entry["pid"])
    if ticks is None:  # no /proc: fall back to "some process has this PID"
        try:
            os.kill(entry["pid"], 0)
        except OSError:
            return False
        return entry.get("ticks") is None
    return ticks == entry.get("ticks")


def wait_ready(name: str, url: str, entry: dict[str, Any], logs: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive(entry):
            tail = (logs / f"{name}.log").read_text(errors="replace")[-2000:]
            raise ServiceError(f"{name} exited before it was ready; end of its log:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise ServiceError(f"{name} not ready at {url} after {READY_TIMEOUT_S:.0f} s: see {logs}")


def run_cli(command: list[str], env: dict[str, str], logs: Path, name: str) -> None:
    with open(logs / f"{name}.log", "ab") as log:
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
    logs = run_dir(home)
    logs.mkdir(parents=True, exist_ok=True)
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    prefect_port = choose_port("PERENNIAL_PREFECT_PORT", 4200)
    mlflow_port = choose_port("PERENNIAL_MLFLOW_PORT", 5000)
    urls = database_urls(os.environ.get("PERENNIAL_DB_URL"), home)
    if os.environ.get("PERENNIAL_DB_URL"):
        create_databases(urls)
    extra = service_env(home, prefect_port, mlflow_port)
    env = {**os.environ, **extra}
    server_env = {**env, "PREFECT_API_DATABASE_CONNECTION_URL": urls["prefect"]}
    processes: dict[str, dict[str, Any]] = {}
    state = {
        "home": str(home),
        "processes": processes,
        "prefect_ui": f"http://127.0.0.1:{prefect_port}",
        "mlflow_ui": f"http://127.0.0.1:{mlflow_port}",
        "env": extra,
        "databases": {k: v.split("@")[-1] for k, v in urls.items()},  # no passwords on disk
    }
    state_path = logs / "service.json"
    try:
        processes["prefect-server"] = spawn(
            "prefect-server",
            [
                str(BIN / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(prefect_port),
            ],
            server_env,
            logs,
        )
        processes["mlflow-server"] = spawn(
            "mlflow-server",
            [
                *(str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(mlflow_port)),
                *("--workers", "1", "--backend-store-uri", urls["mlflow"]),
                *("--artifacts-destination", str(home / "mlartifacts")),
            ],
            env,
            logs,
        )
        state_path.write_text(json.dumps(state, indent=2))  # so `down` works from here on
        wait_ready(
            "prefect-server",
            f"{extra['PREFECT_API_URL']}/health",
            processes["prefect-server"],
            logs,
        )
        wait_ready(
            "mlflow-server", f"{state['mlflow_ui']}/health", processes["mlflow-server"], logs
        )
        prefect = [str(BIN / "prefect"), "--no-prompt"]
        pool = [*prefect, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"]
        run_cli(pool, env, logs, "deploy")
        run_cli([*prefect, "deploy", "--all"], env, logs, "deploy")
        processes["worker"] = spawn(
            "worker",
            [*prefect, "worker", "start", "--pool", WORK_POOL, "--type", "process"],
            env,
            logs,
        )
        state_path.write_text(json.dumps(state, indent=2))
    except BaseException:
        down(home)
        raise
    (logs / "env").write_text("".join(f"{key}={value}\n" for key, value in extra.items()))
    return state


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
    for name in ("worker", "mlflow-server", "prefect-server"):
        entry = state["processes"].get(name)
        if entry is not None:
            stop(entry)
            stopped.append(f"{name} (pid {entry['pid']})")
    for leftover in ("service.json", "env"):
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
    if len(args) != 1 or args[0] not in ("up", "down", "status"):
        print("usage: python -m flows.service up|down|status", file=sys.stderr)
        return 2
    home = home_dir()
    if args[0] == "up":
        try:
            state = up(home)
        except ServiceError as exc:
            print(f"make up failed: {exc}", file=sys.stderr)
            return 1
        print(f"Prefect UI:  {state['prefect_ui']}  (deployments: training, monitoring, ...)")
        print(f"MLflow UI:   {state['mlflow_ui']}")
        print(f"logs and PIDs in {run_dir(home)}; `set -a; . {run_dir(home) / 'env'}` to use it")
    elif args[0] == "down":
        stopped = down(home)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        print(json.dumps(status(home), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
