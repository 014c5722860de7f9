"""The `prod` ECS work pool made from Terraform outputs, on a real local `prefect server`: the
pool's template defaults are the outputs, and a production deployment from
infra/prefect-prod.yaml targets it and renders an ECS job with those values. No AWS involved."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.workpool import OutputsError, fill_template, read_outputs
from tests.conftest import ROOT, stop_process

SAMPLE = ROOT / "infra" / "tests" / "sample_outputs.json"
PREFECT_FILE = ROOT / "infra" / "prefect-prod.yaml"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` on a free port with its own PREFECT_HOME; stopped by PID."""
    port, home = free_port(), tmp_path_factory.mktemp("prefect-home")
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": url,
        "PREFECT_API_URL": url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (home / "server.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "prefect server not healthy after 120 s"
            time.sleep(0.5)  # polling /api/health until the server answers
        yield url, env
    finally:
        stop_process(server, grace_s=20)
        log.close()


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def deployed(prefect_api: tuple[str, dict[str, str]]) -> dict[str, Any]:
    """Pool from the sample outputs, then `prefect deploy` of the production deployments."""
    url, env = prefect_api
    made = run([sys.executable, str(ROOT / "infra" / "workpool.py"), str(SAMPLE)], env)
    assert "work pool 'prod' (ecs, template from " in made.stdout
    assert "warning" not in made.stderr  # the worker service polls the pool deployed to
    run(
        [
            str(BIN / "prefect"),
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(PREFECT_FILE),
        ],
        env,
    )
    pool = httpx.get(f"{url}/work_pools/prod", timeout=10).json()
    deployment = httpx.get(f"{url}/deployments/name/training/training-prod", timeout=10).json()
    return {"pool": pool, "deployment": deployment, "url": url}


@pytest.mark.e2e
@pytest.mark.slow
def test_pool_template_defaults_are_the_terraform_outputs(deployed: dict[str, Any]) -> None:
    outputs = read_outputs(SAMPLE)
    pool = deployed["pool"]
    assert pool["type"] == "ecs"
    properties = pool["base_job_template"]["variables"]["properties"]
    for name, value in outputs["ecs_work_pool_job_variables"].items():
        assert properties[name]["default"] == value, name
    assert properties["configure_cloudwatch_logs"]["default"] is True
    container = pool["base_job_template"]["job_configuration"]["task_definition"][
        "containerDefinitions"
    ][0]
    assert container["secrets"] == outputs["flow_run_container_secrets"]


@pytest.mark.e2e
@pytest.mark.slow
def test_production_deployment_runs_an_ecs_job_made_of_the_outputs(
    deployed: dict[str, Any],
) -> None:
    from prefect.utilities.templating import apply_values

    outputs = read_outputs(SAMPLE)
    deployment, template = deployed["deployment"], deployed["pool"]["base_job_template"]
    assert deployment["work_pool_name"] == "prod"
    assert deployment["entrypoint"] == "flows/training.py:training"
    assert deployment["global_concurrency_limit"]["limit"] == 1  # one training at a time
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    # What the ECS worker will run: the template rendered with the pool's defaults overlaid by
    # the deployment's job variables (as the worker does), here with no overrides at all.
    values = {
        name: spec.get("default") for name, spec in template["variables"]["properties"].items()
    }
    values.update(deployment["job_variables"] or {})
    job = apply_values(template["job_configuration"], values)
    job_variables = outputs["ecs_work_pool_job_variables"]
    assert job["cluster"] == job["task_run_request"]["cluster"] == outputs["ecs_cluster_arn"]
    assert job["vpc_id"] == outputs["vpc_id"]
    assert job["network_configuration"]["subnets"] == outputs["subnet_ids"]
    assert job["network_configuration"]["securityGroups"] == [outputs["security_group_id"]]
    assert job["network_configuration"]["assignPublicIp"] == "DISABLED"
    assert job["task_run_request"]["overrides"]["taskRoleArn"] == outputs["task_role_arn"]
    assert job["task_definition"]["executionRoleArn"] == outputs["execution_role_arn"]
    assert job["task_definition"]["containerDefinitions"][0]["image"] == outputs["image"]
    assert job["cloudwatch_logs_options"]["awslogs-group"] == outputs["log_group_name"]
    assert job["task_definition"]["family"] == job_variables["family"]
    for name, value in outputs["perennial_env"].items():
        assert job["env"][name] == value, name
    ingestion = httpx.get(
        f"{deployed['url']}/deployments/name/ingestion/ingestion-prod", timeout=10
    ).json()
    assert ingestion["work_pool_name"] == "prod"


def test_a_null_in_the_pool_env_is_allowed_by_the_template() -> None:
    """The outputs null PREFECT_API_AUTH_STRING (the worker's own must not reach runs as plain
    environment); the server's bundled ECS template types `env` values as strings only."""
    import prefect.server.api as server_api

    metadata = Path(server_api.__file__).parent / "collections_data" / "views"
    workers = json.loads((metadata / "aggregate-worker-metadata.json").read_text())
    template = next(
        worker["default_base_job_configuration"]
        for collection in workers.values()
        for worker in collection.values()
        if isinstance(worker, dict) and worker.get("type") == "ecs"
    )
    outputs = read_outputs(SAMPLE)
    assert outputs["ecs_work_pool_job_variables"]["env"]["PREFECT_API_AUTH_STRING"] is None
    env = fill_template(template, outputs)["variables"]["properties"]["env"]
    assert {"type": "null"} in env["additionalProperties"]["anyOf"]
    assert env["default"] == outputs["ecs_work_pool_job_variables"]["env"]


def test_outputs_without_the_job_variables_are_refused(tmp_path: Path) -> None:
    partial = {k: v for k, v in json.loads(SAMPLE.read_text()).items() if k != "vpc_id"}
    del partial["ecs_work_pool_job_variables"]
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(partial))
    template = {"variables": {"properties": {"cluster": {}}}, "job_configuration": {}}
    with pytest.raises(OutputsError, match="ecs_work_pool_job_variables"):
        fill_template(template, read_outputs(path))
    path.write_text(json.dumps({"vpc_id": "vpc-1"}))  # `terraform output -json vpc_id`-style
    with pytest.raises(OutputsError, match="terraform output -json"):
        read_outputs(path)
