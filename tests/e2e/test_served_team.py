"""Served mode a team can trust, on the real stack (`make up`, on free ports):

- two datasets served at once, each with its own deployments and drift trigger;
- locked down: Prefect API auth, CSRF, CORS for the UI's origin only, MLflow basic auth,
  state files 0600 and no secret in `service.json` or `status`;
- five processes racing for the champion (two trainings, a promotion, a rollback, a forced
  promotion) leave one champion and a history that holds every move, in order;
- a tampered model artifact is refused by `predict`, naming the version.

The second dataset is synthetic (weekly sensor readings, tests/integration/test_second_dataset)
so that its trainings take seconds; flights only has to be deployed and left alone.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    FLIGHTS,
    ROOT,
    process_command_lines,
    run_console_script,
    run_perennial,
    served_stack,
)
from tests.e2e.test_served_mode import api, emit_drift_events, json_of
from tests.integration.test_second_dataset import CONFIG as SENSORS_CONFIG
from tests.integration.test_second_dataset import write_week

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(2400)]

WEEKS = [f"2024-W{week:02d}" for week in range(1, 8)]
RUN_WAIT_S = 900.0


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A configs folder with the flights demo and the sensors dataset, and a week of sensor
    readings per file under `incoming/`."""
    folder = tmp_path_factory.mktemp("configs")
    flights = yaml.safe_load(FLIGHTS.read_text())
    flights["validation"]["gx_root"] = str(ROOT / "great_expectations")
    (folder / "flights.yaml").write_text(yaml.safe_dump(flights))
    (folder / "sensors.yaml").write_text(SENSORS_CONFIG)
    (folder / "incoming").mkdir()
    for seed, week in enumerate(WEEKS):
        write_week(folder / "incoming", week, seed)
    return folder


@pytest.fixture(scope="module")
def service(configs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("team") / "home"
    with served_stack(
        home,
        PERENNIAL_CONFIGS_DIR=str(configs),
        PERENNIAL_HPO__WORKERS="1",
    ) as state:
        yield state


def cli(service: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return run_perennial(service["env"], *args)


def sensors(service: dict[str, Any], configs: Path, *args: str) -> Any:
    return cli(service, *args, "--config", str(configs / "sensors.yaml"))


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    """(status, headers) of a plain HTTP request, errors included."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, method=method, headers=headers or {}), timeout=30
        ) as reply:
            return reply.status, dict(reply.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def deployments(service: dict[str, Any]) -> dict[str, Any]:
    async def call(client: Any) -> dict[str, Any]:
        found = await client.read_deployments()
        flows = {f.id: f.name for f in await client.read_flows()}
        return {f"{flows[d.flow_id]}/{d.name}": d for d in found}

    return dict(api(service, call))


def flow_runs(service: dict[str, Any], deployment_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    async def call(client: Any) -> list[Any]:
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        return list(await client.read_flow_runs(deployment_filter=only, limit=50))

    return list(api(service, call))


def test_every_dataset_is_deployed_with_its_own_trigger(service: dict[str, Any]) -> None:
    found = deployments(service)
    for flow in ("training", "monitoring", "inference", "ingestion"):
        assert {f"{flow}/flights", f"{flow}/sensors"} <= set(found), sorted(found)
    for name in ("flights", "sensors"):
        deployment = found[f"training/{name}"]
        assert deployment.parameters["dataset"] == name
    assert service["datasets"] == ["flights", "sensors"]

    async def automations(client: Any) -> list[Any]:
        return list(await client.read_automations())

    matches = {
        a.name: a.trigger.match.model_dump()["prefect.resource.id"]
        for a in api(service, automations)
    }
    assert matches == {
        "retrain-flights-on-drift": "perennial.dataset.flights",
        "retrain-sensors-on-drift": "perennial.dataset.sensors",
    }


def test_the_api_refuses_requests_without_the_auth_string(service: dict[str, Any]) -> None:
    api_url = service["env"]["PREFECT_API_URL"]
    for path in ("/admin/settings", "/admin/version", "/csrf-token?client=x", "/work_pools/"):
        status, _ = request(f"{api_url}{path}")
        assert status == 401, path
    status, _ = request(f"{api_url}/flows/filter", method="POST")
    assert status in (401, 403)  # CSRF and auth both refuse a bare POST
    token = base64.b64encode(service["env"]["PREFECT_API_AUTH_STRING"].encode()).decode()
    status, _ = request(f"{api_url}/admin/version", headers={"Authorization": f"Basic {token}"})
    assert status == 200
    # A page from another origin may not call the API from the user's browser.
    preflight = {"Access-Control-Request-Method": "POST", "Origin": "http://evil.example"}
    _, headers = request(f"{api_url}/flows/filter", method="OPTIONS", headers=preflight)
    assert "access-control-allow-origin" not in {key.lower() for key in headers}
    own = {**preflight, "Origin": service["prefect_ui"]}
    _, headers = request(f"{api_url}/flows/filter", method="OPTIONS", headers=own)
    allowed = {key.lower(): value for key, value in headers.items()}
    assert allowed.get("access-control-allow-origin") == service["prefect_ui"]
    # CSRF protection is on: the server hands out tokens (to authenticated clients).
    status, _ = request(
        f"{api_url}/csrf-token?client=test", headers={"Authorization": f"Basic {token}"}
    )
    assert status == 200


def test_mlflow_refuses_requests_without_credentials(service: dict[str, Any]) -> None:
    search = f"{service['mlflow_ui']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert request(search)[0] == 401
    env = service["env"]
    good = f"{env['MLFLOW_TRACKING_USERNAME']}:{env['MLFLOW_TRACKING_PASSWORD']}"
    bad = f"{env['MLFLOW_TRACKING_USERNAME']}:wrong"
    for pair, expected in ((bad, 401), (good, 200)):
        basic = base64.b64encode(pair.encode()).decode()
        assert request(search, headers={"Authorization": f"Basic {basic}"})[0] == expected


def test_state_files_are_private_and_hold_no_secret(service: dict[str, Any]) -> None:
    run = Path(service["home"]) / "run"
    assert run.stat().st_mode & 0o777 == 0o700
    for path in run.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600, path
    env = service["env"]
    secret_values = [
        env["PREFECT_API_AUTH_STRING"],
        env["MLFLOW_TRACKING_PASSWORD"],
        env["PERENNIAL_MODEL_SIGNING_KEY"],
    ]
    public = (run / "service.json").read_text()
    status = run_console_script(
        "python", env, "-m", "flows.supervision.served_stack", "status", timeout=120
    )
    assert status.returncode == 0, status.stderr
    command_lines = process_command_lines()
    logs = "".join(p.read_text(errors="replace") for p in run.glob("*.log"))
    for value in secret_values:
        assert value not in public
        assert value not in status.stdout
        assert value not in command_lines
        assert value not in logs
    # The servers do not hold the key that signs the models the registry stores; the worker does.
    for name, holds in (("mlflow-server", False), ("prefect-server", False), ("worker", True)):
        environ = Path(f"/proc/{service['processes'][name]['pid']}/environ").read_bytes()
        assert (b"PERENNIAL_MODEL_SIGNING_KEY=" in environ) is holds, name


def test_a_drift_event_on_the_second_dataset_retrains_only_it(
    service: dict[str, Any], configs: Path
) -> None:
    for week in WEEKS[:2]:
        landed = sensors(service, configs, "ingest", "--batch", week, "--no-validate")
        assert landed.returncode == 0, landed.stderr[-2000:]
    profiled = sensors(service, configs, "validate", "--profile", f"{WEEKS[0]}..{WEEKS[1]}")
    assert profiled.returncode == 0, profiled.stderr[-2000:]
    for week in WEEKS[2:]:
        landed = sensors(service, configs, "ingest", "--batch", week, "--json")
        assert landed.returncode == 0, landed.stderr[-2000:]
    found = deployments(service)
    before_flights = flow_runs(service, found["training/flights"].id)

    emit_drift_events(service, "sensors", WEEKS[3], "none")
    deadline = time.monotonic() + RUN_WAIT_S
    runs: list[Any] = []
    while time.monotonic() < deadline:
        runs = flow_runs(service, found["training/sensors"].id)
        runs = [r for r in runs if r.parameters.get("reason", "").startswith("drift on")]
        if runs and all(r.state and r.state.is_final() for r in runs):
            break
        time.sleep(2)
    [retrain] = runs
    log = (Path(service["home"]) / "run" / "worker.log").read_text(errors="replace")[-3000:]
    assert retrain.state_name == "Completed", log
    assert retrain.parameters["dataset"] == "sensors"
    assert flow_runs(service, found["training/flights"].id) == before_flights  # untouched
    status = sensors(service, configs, "status", "--json")
    assert json_of(status.stdout)["champion"]["version"] == "1"
    print(f"event -> sensors retrain started: {(retrain.start_time - retrain.created)}")


def test_each_dataset_is_scored_in_real_time_behind_a_token(
    service: dict[str, Any], configs: Path
) -> None:
    """`make up` runs `perennial serve` per dataset; after the drift retrain above, sensors has
    a champion, which its service picks up by polling and scores with."""
    import pandas as pd

    url = service["scoring"]["sensors"]
    token = {"Authorization": f"Bearer {service['env']['PERENNIAL_SERVE_TOKEN']}"}
    assert request(f"{url}/version")[0] == 401
    assert request(f"{url}/version", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert request(f"{service['scoring']['flights']}/health")[0] == 503  # no champion yet
    row = pd.read_csv(configs / "incoming" / f"{WEEKS[6]}.csv").drop(columns=["peak"]).iloc[0]
    body = json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if request(f"{url}/health")[0] == 200:
            break
        time.sleep(1)
    scored = urllib.request.urlopen(
        urllib.request.Request(
            f"{url}/predict",
            data=body.encode(),
            method="POST",
            headers={**token, "Content-Type": "application/json"},
        ),
        timeout=30,
    )
    answer = json.loads(scored.read())
    assert answer["alias"] == "champion" and answer["version"]
    assert 0 <= answer["predictions"][0]["score"] <= 1


def _run_all(service: dict[str, Any], commands: list[list[str]]) -> list[Any]:
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: cli(service, *args), commands))


def test_five_movers_race_and_every_move_is_kept_in_order(
    service: dict[str, Any], configs: Path
) -> None:
    from tasks.core.config import load_config
    from tasks.registry.champion import champion_history, champion_moves
    from tasks.registry.client import CHAMPION, connect

    sensors_yaml = str(configs / "sensors.yaml")
    second = cli(
        service, "train", "--batches", f"{WEEKS[0]}..{WEEKS[4]}", "--trials", "3",
        "--config", sensors_yaml, "--json",
    )  # fmt: skip
    assert second.returncode == 0, second.stderr[-2000:]
    if not json_of(second.stdout)["promoted"]:
        forced = cli(
            service, "promote", "--version", json_of(second.stdout)["version"], "--force",
            "--reason", "a history of two before the race", "--config", sensors_yaml,
        )  # fmt: skip
        assert forced.returncode == 0, forced.stderr[-2000:]

    with pytest.MonkeyPatch.context() as patch:
        for key, value in service["env"].items():
            patch.setenv(key, value)
        patch.setenv("PERENNIAL_CONFIGS_DIR", str(configs))
        config = load_config(configs / "sensors.yaml")
        client = connect(config)
        moves_before = len(champion_moves(client, config.model_name))

        movers = (
            ["train", "--batches", f"{WEEKS[0]}..{WEEKS[5]}", "--trials", "2", "--json"],
            # Not the drift retrain's v1 (every week, 2 trials): a new version to decide on.
            ["train", "--batches", f"{WEEKS[0]}..{WEEKS[6]}", "--trials", "3", "--json"],
            ["promote", "--version", "1", "--json"],
            ["rollback", "--reason", "race", "--json"],
            ["promote", "--version", "1", "--force", "--reason", "race", "--json"],
        )
        results = _run_all(service, [[*args, "--config", sensors_yaml] for args in movers])
        moved = 0
        for result in results:
            # Every mover either moved or was refused with its reason: never a crash.
            assert result.returncode in (0, 1), result.stderr[-3000:]
            if result.returncode == 0:
                payload = json_of(result.stdout)
                assert not payload.get("existing"), payload
                moved += 1 if payload.get("promoted", True) else 0
            else:
                assert result.stderr.strip().splitlines()[-1].startswith("rejected: ")
        history = champion_history(client, config.model_name)
        moves = champion_moves(client, config.model_name)
        champion = client.get_model_version_by_alias(config.model_name, CHAMPION)

    race = moves[moves_before:]
    assert len(race) == moved, (moved, race, [r.stdout[-500:] for r in results])
    for earlier, later in itertools.pairwise(moves):
        # No lost update: each move starts from where the one before it left the champion.
        assert later["from"] == earlier["to"], moves
        assert later["at"] >= earlier["at"]
        assert later["by"] and later["action"] in ("train", "promote", "rollback")
    assert moves[-1]["to"] == str(champion.version) == history[-1]


def test_a_tampered_model_artifact_is_refused_by_predict(
    service: dict[str, Any], configs: Path
) -> None:
    from tasks.core.config import load_config
    from tasks.registry.client import CHAMPION, connect

    with pytest.MonkeyPatch.context() as patch:
        for key, value in service["env"].items():
            patch.setenv(key, value)
        config = load_config(configs / "sensors.yaml")
        champion = connect(config).get_model_version_by_alias(config.model_name, CHAMPION)
    home = Path(service["home"])
    model_id = champion.model_id or champion.source.removeprefix("models:/")  # REST leaves it out
    stored = f"*/models/{model_id}/artifacts/artifacts/booster.ubj"  # the pyfunc's artifacts/
    [booster] = list((home / "mlartifacts").glob(stored))
    good = booster.read_bytes()
    try:
        booster.write_bytes(good + b"\n# appended by an attacker")
        refused = sensors(service, configs, "predict", "--batch", WEEKS[6])
        assert refused.returncode == 1
        assert f"v{champion.version} of sensors-overheat" in refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith("rejected: ") and "tampered" in last
    finally:
        booster.write_bytes(good)
    scored = sensors(service, configs, "predict", "--batch", WEEKS[6], "--json")
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert json_of(scored.stdout)["champion"]["version"] == str(champion.version)


def test_a_ui_run_can_name_neither_a_file_nor_a_path_as_dataset(service: dict[str, Any]) -> None:
    from prefect.deployments import run_deployment

    async def call(client: Any) -> list[Any]:
        runs = []
        for parameters in (
            {"batch": WEEKS[0], "source": "/etc/passwd"},
            {"batch": WEEKS[0], "dataset": "../../etc/passwd"},
            {"batch": "../../../etc/passwd"},
        ):
            runs.append(
                await run_deployment(
                    "ingestion/sensors", parameters=parameters, timeout=600, client=client
                )
            )
        return runs

    expected = ("configured source", "not a path", "no paths")
    for run, reason in zip(api(service, call), expected, strict=True):
        assert run.state.is_failed(), run.state
        assert reason in (run.state.message or ""), run.state.message


def test_a_killed_lock_holder_frees_the_registry_lock_within_its_lease(
    service: dict[str, Any], configs: Path
) -> None:
    """A mover killed while it holds the registry lock (SIGKILL: no cleanup) must not block
    every later move: its slot's lease runs out and the next mover gets the lock."""
    take = (
        "import sys, time\n"
        "from tasks.core.config import load_config\n"
        "from tasks.registry.locks import alias_lock\n"
        f"config = load_config({str(configs / 'sensors.yaml')!r})\n"
        "started = time.monotonic()\n"
        "with alias_lock(config) as kind:\n"
        "    print(kind, round(time.monotonic() - started, 1), flush=True)\n"
        "    if sys.argv[1] == 'hold':\n"
        "        time.sleep(3600)\n"
    )
    env = {**os.environ, **service["env"]}
    holder = subprocess.Popen(
        [sys.executable, "-c", take, "hold"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().startswith("prefect global concurrency limit")
    finally:
        holder.kill()
        holder.wait()
    second = subprocess.run(
        [sys.executable, "-c", take, "take"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    kind, waited = second.stdout.rsplit(" ", 1)
    assert kind == "prefect global concurrency limit"
    print(f"lock freed {waited} s after its holder was killed")
