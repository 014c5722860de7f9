"""Create or update the `prod` ECS work pool, its base job template filled from Terraform outputs.

    outputs=$(mktemp) && terraform -chdir=infra output -json > "$outputs"
    PREFECT_API_URL=http://<alb>:4200/api PREFECT_API_AUTH_STRING=... \
        python infra/workpool.py "$outputs"
    python infra/workpool.py "$outputs" --print      # the template only, no changes

The default ECS template is prefect-aws's when it is installed, else the one in the Prefect
server's worker metadata (bundled with Prefect: neither prefect-aws nor internet access needed).
Every key of the `ecs_work_pool_job_variables` output (cluster, VPC, subnets and security group,
task and execution role ARNs, image, family, CPU/memory, CloudWatch log options, env) becomes
the default of the template variable of that name (a null in `env` unsets that variable);
`flow_run_container_secrets` (from Secrets Manager: PGPASSWORD, the Prefect auth string, the
flow_run MLflow user, the model-signing key) goes into the task definition's container, which has
no variable for it.
Deployments that target the pool then run with these values unless they override them.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_POOL = "prod"
JOB_VARIABLES_OUTPUT = "ecs_work_pool_job_variables"
SECRETS_OUTPUT = "flow_run_container_secrets"
# prefect-aws's own `env` schema: a null unsets a variable the worker would pass on.
NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}


class OutputsError(ValueError):
    """The Terraform outputs file cannot fill the template; the message says what to do."""


def read_outputs(path: Path | str) -> dict[str, Any]:
    """Values of a `terraform output -json` file (`{name: {"value": ..., ...}}`), by name."""
    source = Path(path)
    try:
        raw = json.loads(sys.stdin.read() if str(path) == "-" else source.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputsError(f"{path}: cannot read Terraform outputs JSON: {exc}") from exc
    if not isinstance(raw, dict) or not all(
        isinstance(item, dict) and "value" in item for item in raw.values()
    ):
        raise OutputsError(
            f"{path}: expected `terraform output -json` format ({{name: {{value: ...}}}}); "
            "run `terraform -chdir=infra output -json > FILE`"
        )
    return {name: item["value"] for name, item in raw.items()}


def fill_template(template: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """A copy of the ECS base job template whose variable defaults are the Terraform outputs."""
    job_variables = outputs.get(JOB_VARIABLES_OUTPUT)
    if not isinstance(job_variables, dict) or not job_variables:
        raise OutputsError(
            f"the outputs have no '{JOB_VARIABLES_OUTPUT}' map: apply the Terraform in infra/ "
            "(see infra/outputs.tf) and export the outputs again"
        )
    filled = copy.deepcopy(template)
    properties = filled["variables"]["properties"]
    unknown = sorted(set(job_variables) - set(properties))
    if unknown:
        raise OutputsError(
            f"'{JOB_VARIABLES_OUTPUT}' has {unknown}, which the ECS job template does not "
            f"define (it has {sorted(properties)}): rename them in infra/outputs.tf"
        )
    for name, value in job_variables.items():
        properties[name]["default"] = value
    if None in (job_variables.get("env") or {}).values():
        # A worker hands its own settings (its auth string too) to each run as plain
        # environment; a null in `env` drops one. prefect-aws's schema admits null, the server's
        # bundled metadata may not yet.
        properties["env"]["additionalProperties"] = NULLABLE_STRING
    if "cloudwatch_logs_options" in job_variables and "configure_cloudwatch_logs" in properties:
        properties["configure_cloudwatch_logs"]["default"] = True
    secrets = outputs.get(SECRETS_OUTPUT)
    if secrets:
        container = filled["job_configuration"]["task_definition"]["containerDefinitions"][0]
        container["secrets"] = secrets
    return filled


async def default_ecs_template() -> tuple[dict[str, Any], str]:
    """The ECS worker's default base job template, and where it came from.

    prefect-aws's own template when it is installed (the version the worker in the image runs);
    otherwise the one in the Prefect server's worker metadata, bundled with Prefect, which may
    trail the newest prefect-aws by a few optional variables.
    """
    try:
        from prefect_aws.workers.ecs_worker import ECSWorker
    except ImportError:
        pass
    else:
        return dict(ECSWorker.get_default_base_job_template()), "prefect-aws"
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        metadata = await client.read_worker_metadata()
    for workers in metadata.values():
        for worker in workers.values():
            if worker.get("type") == "ecs":
                return dict(worker["default_base_job_configuration"]), "the server's metadata"
    raise OutputsError(
        "the Prefect server knows no 'ecs' worker type: install prefect-aws, or upgrade Prefect"
    )


async def apply_pool(name: str, template: dict[str, Any]) -> Any:
    """Create the pool, or overwrite its template if it exists (other settings are kept)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    async with get_client() as client:
        return await client.create_work_pool(
            WorkPoolCreate(
                name=name,
                type="ecs",
                description="Perennial flow runs on ECS Fargate (defaults from Terraform outputs)",
                base_job_template=template,
            ),
            overwrite=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outputs", help="`terraform output -json` file ('-' for stdin)")
    parser.add_argument("--pool", default=DEFAULT_POOL, help=f"pool name (default {DEFAULT_POOL})")
    parser.add_argument(
        "--print", action="store_true", help="print the filled template; change nothing"
    )
    args = parser.parse_args(argv)
    try:
        outputs = read_outputs(args.outputs)
        default, origin = asyncio.run(default_ecs_template())
        template = fill_template(default, outputs)
    except OutputsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print:
        print(json.dumps(template, indent=2, sort_keys=True))
        return 0
    polled = outputs.get("work_pool_name")
    if polled and polled != args.pool:
        print(
            f"warning: the ECS worker service polls '{polled}' (output work_pool_name), "
            f"not '{args.pool}': runs in '{args.pool}' wait for a worker on that pool",
            file=sys.stderr,
        )
    pool = asyncio.run(apply_pool(args.pool, template))
    variables = template["variables"]["properties"]
    print(
        f"work pool '{pool.name}' (ecs, template from {origin}): cluster "
        f"{variables['cluster']['default']}, image {variables['image']['default']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
