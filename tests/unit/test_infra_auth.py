"""Structural tests of the AWS stack's authentication (python-hcl2, no provider): the Prefect API
asks for its auth string, MLflow runs its basic-auth app, every credential is generated into
Secrets Manager and reaches only the tasks that need it (ECS `secrets`, never plain
environment), and the Prefect and MLflow ports take traffic from security groups only.

The table of who gets which secret is data in modules/settings (`secret_environment`), so
infra/tests/app_secrets.tftest.hcl checks it with Terraform itself; these tests check the same
table from the parsed HCL, and that IAM, the task definitions and the work pool all follow it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

pytest.importorskip("hcl2")

from tests.unit.test_infra import (
    INFRA,
    MODULES,
    blocks,
    locals_of,
    named,
    one,
    parse,
    policy_statements,
    resources,
    text,
)

SETTINGS, COMPUTE, NETWORK, IAM = (MODULES / n for n in ("settings", "compute", "network", "iam"))
PREFECT_PORT, MLFLOW_PORT = 4200, 5000

# Who needs which application secret, and nobody else.
EXPECTED_READERS = {
    "prefect_api_auth": {"prefect_server", "worker", "flow_run"},
    "mlflow_admin": {"mlflow", "db_bootstrap"},
    "mlflow_session_key": {"mlflow"},
    "mlflow_flow_run": {"flow_run", "db_bootstrap"},
    "mlflow_serve": {"serve", "db_bootstrap"},
    "model_signing_key": {"flow_run", "serve"},
}


def settings_locals() -> dict[str, Any]:
    return locals_of(SETTINGS / "main.tf")


def secret_environment() -> dict[str, dict[str, dict[str, Any]]]:
    """Task family -> environment variable -> {secret, key}: the literal table in settings."""
    return settings_locals()["secret_environment"]


def services() -> dict[str, dict[str, Any]]:
    return locals_of(COMPUTE / "services.tf")["services"]


def plain_names(service: dict[str, Any]) -> set[str]:
    return {entry["name"] for entry in service["environment"]}


# --- the table: who reads what ------------------------------------------------------------


def test_each_secret_is_read_only_by_the_tasks_that_need_it() -> None:
    table = secret_environment()
    secrets = settings_locals()["app_secrets"]
    assert set(secrets) == set(EXPECTED_READERS)
    readers = {
        secret: {
            family
            for family, variables in table.items()
            for source in variables.values()
            if source["secret"] == secret
        }
        for secret in secrets
    }
    assert readers == EXPECTED_READERS
    for family, variables in table.items():
        for name, source in variables.items():
            json_secret = secrets[source["secret"]]["username"] is not None
            assert (source["key"] in {"username", "password"}) == json_secret, (family, name)


def test_prefect_server_requires_the_auth_string_and_clients_send_it() -> None:
    table = secret_environment()
    assert table["prefect_server"] == {
        "PREFECT_SERVER_API_AUTH_STRING": {"secret": "prefect_api_auth", "key": None}
    }
    for client in ("worker", "flow_run"):
        assert table[client]["PREFECT_API_AUTH_STRING"] == {
            "secret": "prefect_api_auth",
            "key": None,
        }
    server = services()["prefect_server"]
    environment = {entry["name"]: entry["value"] for entry in server["environment"]}
    assert environment["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert environment["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == "${local.prefect_ui_origin}"
    origin = locals_of(COMPUTE / "main.tf")["prefect_ui_origin"]
    assert origin == "${local.scheme}://${aws_lb.this.dns_name}:${local.ports.prefect}"
    assert "*" not in origin


def test_mlflow_runs_the_basic_auth_app_with_its_users_on_postgres() -> None:
    mlflow = services()["mlflow"]
    command = mlflow["command"]
    server = command.index("mlflow")
    assert command[server : server + 4] == ["mlflow", "server", "--app-name", "basic-auth"]
    environment = {entry["name"]: entry["value"] for entry in mlflow["environment"]}
    assert environment["MLFLOW_AUTH_CONFIG_PATH"] == "${local.mlflow_auth_config_path}"
    assert environment["PERENNIAL_MLFLOW_AUTH_CONFIG"] == "${local.mlflow_auth_config}"
    # The shell only writes the (secret-free) config file, then becomes the MLflow server.
    assert command[:2] == ["sh", "-c"]
    assert "$PERENNIAL_MLFLOW_AUTH_CONFIG" in command[2] and 'exec \\"$0\\" \\"$@\\"' in command[2]
    compute = locals_of(COMPUTE / "main.tf")
    assert compute["mlflow_auth_config_path"].startswith("/scratch/")  # the only writable path
    config = compute["mlflow_auth_config"]
    assert re.search(r"(?m)^\s*default_permission = NO_PERMISSIONS$", config)
    # libpq reads host, user, password (PGPASSWORD from the mlflow secret) and TLS from PG*.
    auth_db = r"(?m)^\s*database_uri = postgresql:///\$\{var.names.mlflow_auth_db_name\}$"
    assert re.search(auth_db, config)
    assert "admin_password" not in config and "password" not in config.lower()
    # The admin and the session key come from Secrets Manager.
    assert secret_environment()["mlflow"] == {
        "MLFLOW_AUTH_ADMIN_USERNAME": {"secret": "mlflow_admin", "key": "username"},
        "MLFLOW_AUTH_ADMIN_PASSWORD": {"secret": "mlflow_admin", "key": "password"},
        "MLFLOW_FLASK_SERVER_SECRET_KEY": {"secret": "mlflow_session_key", "key": None},
    }
    assert settings_locals()["names"]["mlflow_auth_db_name"] == "mlflow_auth"


def test_serve_reads_mlflow_as_the_read_only_user() -> None:
    users = settings_locals()["mlflow_users"]
    assert users["serve"]["admin"] is False and users["serve"]["permission"] == "READ"
    assert users["flow_run"]["admin"] is False and users["flow_run"]["permission"] == "EDIT"
    assert [role for role, user in users.items() if user["admin"]] == ["admin"]
    assert len({user["username"] for user in users.values()}) == len(users)
    table = secret_environment()
    for family, role in (("serve", "serve"), ("flow_run", "flow_run")):
        secret = users[role]["secret"]
        assert table[family]["MLFLOW_TRACKING_USERNAME"] == {"secret": secret, "key": "username"}
        assert table[family]["MLFLOW_TRACKING_PASSWORD"] == {"secret": secret, "key": "password"}
    # db-bootstrap creates each user with its permission, its password from its own secret.
    for role, user in users.items():
        assert table["db_bootstrap"][user["password_env"]] == {
            "secret": user["secret"],
            "key": "password",
        }, role
    bootstrap = one("aws_ecs_task_definition", "db_bootstrap", COMPUTE)["container_definitions"]
    assert "PERENNIAL_MLFLOW_USERS" in bootstrap and "var.mlflow_users" in bootstrap
    assert "PERENNIAL_MLFLOW_AUTH_DB" in bootstrap
    script = text(COMPUTE / "db_bootstrap.py")
    assert "grant_user_permission" in script and '"registered_model"' in script


def test_model_signing_key_reaches_flow_runs_and_serve_only() -> None:
    table = secret_environment()
    given = {
        family for family, variables in table.items() if "PERENNIAL_MODEL_SIGNING_KEY" in variables
    }
    assert given == {"flow_run", "serve"}
    for family in given:
        assert table[family]["PERENNIAL_MODEL_SIGNING_KEY"] == {
            "secret": "model_signing_key",
            "key": None,
        }
    # The ECS worker service never runs flow code; it has the Prefect auth string only.
    assert table["worker"] == {
        "PREFECT_API_AUTH_STRING": {"secret": "prefect_api_auth", "key": None}
    }


# --- the wiring: Secrets Manager, IAM, task definitions, work pool ------------------------------


def test_app_secrets_are_generated_write_only_into_secrets_manager() -> None:
    secret = one("aws_secretsmanager_secret", "app", INFRA)
    assert secret["for_each"] == "${module.settings.app_secrets}"
    assert secret["kms_key_id"] == "${module.database.kms_key_arn}"
    version = one("aws_secretsmanager_secret_version", "app", INFRA)
    assert "secret_string" not in version
    assert "ephemeral.random_password.app[each.key].result" in version["secret_string_wo"]
    assert "app_secret_versions" in version["secret_string_wo_version"]
    generated = parse(INFRA / "app_secrets.tf")["ephemeral"][0]["random_password"]["app"]
    assert generated["for_each"] == "${module.settings.app_secrets}"
    assert generated["length"] >= 32


def test_execution_roles_read_exactly_their_secrets_and_task_roles_none() -> None:
    iam = locals_of(IAM / "main.tf")
    assert "var.app_secret_access" in iam["execution_secrets"]
    assert "var.app_secret_arns[secret]" in iam["execution_secrets"]
    root = named(INFRA / "main.tf", "module")
    assert root["iam"]["app_secret_access"] == "${module.settings.secret_access}"
    assert root["iam"]["app_secret_arns"] == "${local.app_secret_arns}"
    assert locals_of(INFRA / "app_secrets.tf")["app_secret_arns"] == (
        "${{for name, secret in aws_secretsmanager_secret.app : name => secret.arn}}"
    )
    assert named(SETTINGS / "outputs.tf", "output")["secret_access"]["value"] == (
        "${local.secret_access}"
    )
    assert "local.secret_environment" in settings_locals()["secret_access"]
    for name, statement in policy_statements():
        reads_secrets = any(action.startswith("secretsmanager:") for action in statement["actions"])
        if reads_secrets:  # execution roles only, on exact ARNs
            assert name == "execution", name
            assert statement["actions"] == ["secretsmanager:GetSecretValue"]
    document = next(
        body
        for _, type_, name, body in blocks("data", IAM)
        if type_ == "aws_iam_policy_document" and name == "execution"
    )
    read = next(d["statement"] for d in document["dynamic"] if "ReadOwnSecrets" in str(d))
    assert read["content"][0]["resources"] == "${statement.value}"


def test_task_definitions_get_their_family_secrets_never_plain_environment() -> None:
    compute = locals_of(COMPUTE / "main.tf")
    assert "var.secret_environment" in compute["app_secrets"]
    assert "var.app_secret_arns[source.secret]" in compute["app_secrets"]
    root = named(INFRA / "main.tf", "module")["compute"]
    assert root["secret_environment"] == "${module.settings.secret_environment}"
    assert root["app_secret_arns"] == "${local.app_secret_arns}"
    assert root["mlflow_users"] == "${module.settings.mlflow_users}"
    task = one("aws_ecs_task_definition", "this", COMPUTE)["container_definitions"]
    assert "local.app_secrets[each.key]" in task
    bootstrap = one("aws_ecs_task_definition", "db_bootstrap", COMPUTE)["container_definitions"]
    assert 'local.app_secrets["db_bootstrap"]' in bootstrap
    outputs = named(COMPUTE / "outputs.tf", "output")
    assert 'local.app_secrets["flow_run"]' in outputs["flow_run_secrets"]["value"]
    secret_names = {name for variables in secret_environment().values() for name in variables}
    for service, body in services().items():
        assert not plain_names(body) & secret_names, service
        assert not [n for n in plain_names(body) if re.search("AUTH_STRING|PASSWORD|SIGNING", n)]


def test_flow_runs_get_secrets_from_the_task_definition_not_the_worker_env() -> None:
    outputs = named(INFRA / "outputs.tf", "output")
    assert outputs["flow_run_container_secrets"]["value"] == "${module.compute.flow_run_secrets}"
    env = outputs["ecs_work_pool_job_variables"]["value"]["env"]
    # A Prefect worker hands its own settings to the runs it starts as plain environment:
    # null drops the worker's auth string, so the run's one comes from its secret only.
    assert "PREFECT_API_AUTH_STRING = null" in env
    assert not re.search(r"PASSWORD|SIGNING", env)


def test_a_null_in_the_pool_env_keeps_the_workers_auth_string_from_flow_runs() -> None:
    """What the null is for, with Prefect's own job configuration: a worker that has an auth
    string hands it to each run as plain environment unless the pool's env sets it to null."""
    import json
    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings
    from prefect.workers.base import BaseJobConfiguration

    sample = json.loads((INFRA / "tests" / "sample_outputs.json").read_text())
    env = sample["ecs_work_pool_job_variables"]["value"]["env"]
    assert env["PREFECT_API_AUTH_STRING"] is None
    names = {entry["name"] for entry in sample["flow_run_container_secrets"]["value"]}
    assert names == {"PGPASSWORD", *secret_environment()["flow_run"]}
    flow_run = FlowRun(flow_id=uuid4(), name="sample-run")
    with temporary_settings({PREFECT_API_AUTH_STRING: "the-workers-auth-string"}):
        without_null = BaseJobConfiguration(
            command="prefect flow-run execute",
            env={name: value for name, value in env.items() if value is not None},
        )
        without_null.prepare_for_flow_run(flow_run)
        with_null = BaseJobConfiguration(command="prefect flow-run execute", env=env)
        with_null.prepare_for_flow_run(flow_run)
    assert without_null.env["PREFECT_API_AUTH_STRING"] == "the-workers-auth-string"
    assert "PREFECT_API_AUTH_STRING" not in with_null.env
    assert with_null.env["PREFECT_API_URL"] == env["PREFECT_API_URL"]


# --- network: the Prefect and MLflow ports take security groups only ---------------------------


def local_ports(value: Any, network: dict[str, Any]) -> set[int]:
    """Every port number a network local holds: an int, a map of them, or an expression over
    other locals (`merge(local.ports, {serve = local.serve_port})`)."""
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, dict):
        return set().union(*(local_ports(item, network) for item in value.values()))
    if isinstance(value, str):
        found: set[int] = set()
        for name, key in re.findall(r"local\.(\w+)(?:\.(\w+))?", value):
            local = network[name]
            found |= local_ports(local[key] if key else local, network)
        return found
    return set()


def resolve_ports(rule: dict[str, Any], network: dict[str, Any]) -> set[int]:
    """The ports an ingress rule opens: a literal or a local, or each.value over local maps."""
    port = rule["from_port"]
    assert rule["to_port"] == port, "port ranges are not expected here"
    if isinstance(port, str) and port.startswith("${each.value"):
        return local_ports(rule["for_each"], network)
    found = local_ports(port, network)
    assert found, f"cannot resolve port {port}"
    return found


def test_no_ingress_on_prefect_or_mlflow_ports_uses_a_cidr() -> None:
    network = locals_of(NETWORK / "main.tf")
    checked = 0
    for _, name, rule in resources("aws_vpc_security_group_ingress_rule", NETWORK):
        ports = resolve_ports(rule, network)
        if ports & {PREFECT_PORT, MLFLOW_PORT}:
            checked += 1
            assert "referenced_security_group_id" in rule, name
            for key in ("cidr_ipv4", "cidr_ipv6", "prefix_list_id"):
                assert key not in rule, (name, key)
    assert checked >= 3
    assert network["client_ports"] == {"serve": "${local.serve_port}"}


def test_prefect_and_mlflow_reach_only_the_groups_that_need_them() -> None:
    network = locals_of(NETWORK / "main.tf")
    into_alb: dict[int, set[str]] = {PREFECT_PORT: set(), MLFLOW_PORT: set()}
    for _, _, rule in resources("aws_vpc_security_group_ingress_rule", NETWORK):
        if rule["security_group_id"] != "${aws_security_group.alb.id}":
            continue
        for port in resolve_ports(rule, network) & set(into_alb):
            into_alb[port].add(rule["referenced_security_group_id"])
    assert into_alb[PREFECT_PORT] == {
        "${aws_security_group.runner.id}",
        "${aws_security_group.operators.id}",
    }
    assert into_alb[MLFLOW_PORT] == {
        "${aws_security_group.runner.id}",
        "${aws_security_group.serve.id}",
        "${aws_security_group.operators.id}",
    }
    operators = one("aws_security_group", "operators", NETWORK)
    assert "ingress" not in operators
    assert not [
        name
        for _, name, rule in resources("aws_vpc_security_group_ingress_rule", NETWORK)
        if rule["security_group_id"] == "${aws_security_group.operators.id}"
    ]
    outputs = named(INFRA / "outputs.tf", "output")
    assert "security_group_ids.operators" in outputs["operators_security_group_id"]["value"]


# --- smaller items ----------------------------------------------------------------------------


def test_serve_dataset_validation_is_the_config_rule() -> None:
    from tasks.core.config import DATASET_NAME

    expected = f"^{DATASET_NAME.pattern}$"
    root = named(INFRA / "variables.tf", "variable")["serve_dataset"]["validation"][0]
    compute = named(COMPUTE / "variables.tf", "variable")["serve"]["validation"][0]
    for condition in (root["condition"], compute["condition"]):
        found = re.search(r'regex\("(.+?)", var\.serve', condition)
        assert found, condition
        assert found.group(1) == expected, condition
        accepted = re.compile(found.group(1))
        assert accepted.fullmatch("flights") and accepted.fullmatch("flight_delays")
        for rejected in ("Flights", "flight-delays", "../flights", "-x", ""):
            assert not accepted.fullmatch(rejected), rejected


def test_make_infra_workpool_uses_a_private_temporary_file() -> None:
    makefile = (INFRA.parent / "Makefile").read_text()
    recipe = re.search(r"(?ms)^infra-workpool:.*?(?=^\S|\Z)", makefile)
    assert recipe, "no infra-workpool target"
    body = recipe.group(0)
    assert "mktemp" in body
    assert "/tmp/" not in body
    assert re.search(r"trap 'rm -f", body)
