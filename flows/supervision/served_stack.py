"""Served mode: `python -m flows.supervision.served_stack up|down|status|render` (`make up` /
`make down`).

`up` starts, on 127.0.0.1, a Prefect server (API + UI), an MLflow server (tracking + registry,
artifacts under PERENNIAL_HOME), a process worker on the `perennial` work pool and one
`perennial serve` per dataset, then deploys `prefect.yaml` once per dataset of `configs/`.
State lives under `PERENNIAL_HOME/run` (0700): `service.json` (PIDs, ports, URLs; no secrets),
one log per process, `credentials.env` and `env`.

Locked down by default: the Prefect API asks for an auth string, checks CSRF tokens and allows
cross-origin calls from the UI's own origin only; MLflow runs its basic-auth app. `run/env`
(0600) holds the credentials with the URLs, so `set -a; . run/env; set +a` points a shell or
the CLI at the service. Settings, databases and credentials: `served_settings`.

Ports: PERENNIAL_PREFECT_PORT (default 4200) and PERENNIAL_MLFLOW_PORT (default 5000); 0, or a
default port already taken, picks a free one.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from flows.supervision.deployments import (
    WORK_POOL,
    alert_windows,
    render_deployments,
    served_datasets,
)
from flows.supervision.prefect_server import prefect_server_command, server_settings
from flows.supervision.processes import (
    BIN,
    ROOT,
    alive,
    choose_port,
    free_port,
    open_log,
    spawn,
    stop,
    write_private,
)
from flows.supervision.served_settings import (
    CREDENTIALS,
    SIGNING_KEY,
    ServiceError,
    create_databases,
    credentials,
    database_password,
    database_urls,
    home_dir,
    mlflow_auth_config,
    run_dir,
    service_env,
    sourceable_env,
    sqlite_files,
)

READY_TIMEOUT_S = 180.0  # servers take 15-25 s alone, much longer on a loaded 2-core machine
# Credentials no flow run uses: none calls `perennial serve` (its live traffic is read from
# storage). The worker's environment is every flow run's, where any dataset YAML's alert channels
# run: a secret kept out of it cannot be sent anywhere from there.
NOT_FOR_FLOW_RUNS = ("PERENNIAL_SERVE_TOKEN",)


def read_state(home: Path) -> dict[str, Any] | None:
    path = run_dir(home) / "service.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_state(state: dict[str, Any]) -> None:
    write_private(run_dir(Path(state["home"])) / "service.json", json.dumps(state, indent=2))


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
        SIGNING_KEY,  # the CLI loads models too: `perennial predict` checks their signature
    )
    secret = credentials(home)
    return {**state["env"], **{key: secret[key] for key in wanted}}


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


def prepare_databases(home: Path) -> tuple[dict[str, str], str | None]:
    """The back-end URLs and PERENNIAL_DB_URL's password, each database ready: SQLite files
    made 0600 before the servers create them with the umask's mode, or PostgreSQL databases
    created."""
    from tasks.core.private_state import private_file

    db_url = os.environ.get("PERENNIAL_DB_URL")
    urls = database_urls(db_url, home)
    password = database_password(db_url)
    if db_url:
        create_databases(urls, password)
    else:
        for sqlite_file in sqlite_files(home).values():
            private_file(sqlite_file)
    return urls, password


def start_servers(
    state: dict[str, Any],
    client: dict[str, str],
    secret: dict[str, str],
    databases: tuple[dict[str, str], str | None],
    ports: tuple[int, int],
) -> None:
    """The Prefect and MLflow servers (on `ports`), recorded in `state` as they start, then
    waited for."""
    home, processes = Path(state["home"]), state["processes"]
    logs, (urls, password), (prefect_port, mlflow_port) = run_dir(home), databases, ports
    database = {"PGPASSWORD": password} if password else {}
    # Neither server holds the model signing key: it guards what the MLflow server stores.
    client = {key: value for key, value in client.items() if key != SIGNING_KEY}
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
    processes["prefect-server"] = spawn(
        "prefect-server", prefect_server_command(prefect_port), prefect_server_env, logs
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
    write_state(state)  # so `down` works from here on
    auth_string = base64.b64encode(secret["PREFECT_API_AUTH_STRING"].encode()).decode()
    wait_ready(
        "prefect-server",
        f"{client['PREFECT_API_URL']}/health",
        processes["prefect-server"],
        logs,
        {"Authorization": f"Basic {auth_string}"},
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


def worker_env(client: dict[str, str]) -> dict[str, str]:
    """What the worker, and so each flow run it starts, sees: the client's environment (URLs, the
    Prefect auth string, MLflow's user, all used by flows) without `NOT_FOR_FLOW_RUNS`. The
    databases' password is not in it either: only the two servers get it (`start_servers`)."""
    return {key: value for key, value in client.items() if key not in NOT_FOR_FLOW_RUNS}


def deploy(state: dict[str, Any], client: dict[str, str]) -> None:
    """The work pool, the deployments of every dataset, and the worker that runs them."""
    logs, datasets = run_dir(Path(state["home"])), state["datasets"]
    prefect = [str(BIN / "prefect"), "--no-prompt"]
    pool = [*prefect, "work-pool", "create", WORK_POOL, "--type", "process", "--overwrite"]
    run_cli(pool, client, logs, "deploy")
    rendered = logs / "prefect.yaml"
    template = (ROOT / "prefect.yaml").read_text()
    write_private(rendered, render_deployments(template, datasets, alert_windows(datasets)))
    run_cli([*prefect, "deploy", "--all", "--prefect-file", str(rendered)], client, logs, "deploy")
    state["processes"]["worker"] = spawn(
        "worker",
        [*prefect, "worker", "start", "--pool", WORK_POOL, "--type", "process"],
        worker_env(client),
        logs,
    )
    write_state(state)


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
    write_state(state)


def up(home: Path) -> dict[str, Any]:
    """Start everything (or report what is already running) and return the state."""
    state = read_state(home)
    if state and all(alive(entry) for entry in state["processes"].values()):
        return state
    if state:
        down(home)  # a half-dead service: clear it before starting afresh
    from tasks.core.private_state import private_folder

    datasets = served_datasets()
    logs = run_dir(home)
    private_folder(logs)
    logs.chmod(0o700)
    private_folder(home / "prefect")
    prefect_port = choose_port("PERENNIAL_PREFECT_PORT", 4200)
    mlflow_port = choose_port("PERENNIAL_MLFLOW_PORT", 5000)
    databases = prepare_databases(home)
    secret = credentials(home)
    extra = service_env(home, prefect_port, mlflow_port)
    inherited = {k: v for k, v in os.environ.items() if k != "PERENNIAL_DB_URL"}
    client = {
        **inherited,
        **extra,
        **{k: secret[k] for k in secret if not k.startswith("MLFLOW_F")},
    }
    state = {
        "home": str(home),
        "processes": {},
        "prefect_ui": f"http://127.0.0.1:{prefect_port}",
        "mlflow_ui": f"http://127.0.0.1:{mlflow_port}",
        "datasets": datasets,
        "env": extra,
        "credentials": str(logs / CREDENTIALS),
        "databases": {k: v.split("@")[-1] for k, v in databases[0].items()},
        "scoring": {},
    }
    try:
        start_servers(state, client, secret, databases, (prefect_port, mlflow_port))
        deploy(state, client)
        start_scoring(state, client, logs)
    except BaseException:
        down(home)
        raise
    write_private(logs / "env", sourceable_env(client_env(home)))
    return state


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
        print(
            "usage: python -m flows.supervision.served_stack up|down|status|render",
            file=sys.stderr,
        )
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
