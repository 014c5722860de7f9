"""Structural tests of `perennial serve` in the Terraform (python-hcl2, no provider): an ECS
service behind the internal load balancer only, its bearer token from Secrets Manager (never
plain environment, never in state), and roles that can do only what the service needs."""

from __future__ import annotations

import pytest

pytest.importorskip("hcl2")

from tests.unit.test_infra import (
    INFRA,
    MODULES,
    locals_of,
    named,
    one,
    parse,
    policy_statements,
    resources,
    settings_defaults,
)

COMPUTE, NETWORK, IAM = MODULES / "compute", MODULES / "network", MODULES / "iam"


def serve_service() -> dict:
    return locals_of(COMPUTE / "services.tf")["services"]["serve"]


def test_serve_runs_as_an_ecs_service_behind_the_load_balancer() -> None:
    service = serve_service()
    assert service["command"][:2] == ["perennial", "serve"]
    assert service["command"][service["command"].index("--config") + 1] == (
        "configs/${var.serve.dataset}.yaml"
    )
    assert service["lb"] == "serve" and service["port"] == "${local.ports.serve}"
    assert locals_of(COMPUTE / "main.tf")["ports"]["serve"] == 8000
    # Every service of local.services becomes a Fargate service; the serve one with a target
    # group whose health check is the app's /health, and a listener on its port.
    ecs = one("aws_ecs_service", "this", COMPUTE)
    assert ecs["for_each"] == "${local.services}" and ecs["launch_type"] == "FARGATE"
    groups = one("aws_lb_target_group", "this", COMPUTE)["for_each"]
    assert groups["serve"]["port"] == "${local.ports.serve}"
    assert groups["serve"]["health"] == "/health"
    assert one("aws_lb_listener", "this", COMPUTE)["for_each"] == "${local.ports}"
    assert service["min_health"] == 100  # a new task is up before the old one stops
    for environment, size in settings_defaults().items():
        assert size["serve_cpu"] and size["serve_memory"], environment


def test_serve_is_reachable_only_from_inside_the_vpc() -> None:
    assert one("aws_lb", "this", COMPUTE)["internal"] is True
    network = one("aws_ecs_service", "this", COMPUTE)["network_configuration"][0]
    assert network["assign_public_ip"] is False
    assert network["security_groups"] == ["${var.security_group_ids[each.value.sg]}"]
    assert serve_service()["sg"] == "serve"
    into_serve = [
        (name, rule)
        for _, name, rule in resources("aws_vpc_security_group_ingress_rule", NETWORK)
        if rule["security_group_id"] == "${aws_security_group.serve.id}"
    ]
    # Only the load balancer reaches the tasks, and only on the service port.
    assert [name for name, _ in into_serve] == ["serve_from_alb"]
    rule = into_serve[0][1]
    assert rule["referenced_security_group_id"] == "${aws_security_group.alb.id}"
    assert rule["from_port"] == rule["to_port"] == "${local.serve_port}"
    assert "cidr_ipv4" not in rule
    # The load balancer takes port 8000 from the VPC and client_cidrs only (never 0.0.0.0/0,
    # which the root variable's validation refuses), and from the operators group.
    network_locals = locals_of(NETWORK / "main.tf")
    assert network_locals["client_ports"] == {"serve": "${local.serve_port}"}
    clients = one("aws_vpc_security_group_ingress_rule", "alb_from_clients", NETWORK)
    assert "local.lb_client_cidrs" in clients["for_each"]
    assert network_locals["lb_client_cidrs"] == (
        "${distinct(concat([var.vpc_cidr], var.client_cidrs))}"
    )
    # The serve tasks talk to MLflow through the load balancer, to AWS APIs and S3; no database.
    egress = {
        name
        for _, name, rule in resources("aws_vpc_security_group_egress_rule", NETWORK)
        if rule["security_group_id"] == "${aws_security_group.serve.id}"
        or "aws_security_group.serve.id" in str(rule.get("for_each", ""))
    }
    assert egress == {"serve_to_alb", "to_endpoints", "to_s3"}


def test_the_token_comes_from_a_secret_never_plain_environment() -> None:
    service = serve_service()
    assert service["secrets"] == [
        {"name": "PERENNIAL_SERVE_TOKEN", "valueFrom": "${var.serve.token_secret_arn}"}
    ]
    assert not [e for e in service["environment"] if "TOKEN" in e["name"].upper()]
    secrets = one("aws_ecs_task_definition", "this", COMPUTE)["container_definitions"]
    assert "each.value.secrets" in secrets
    # Generated ephemeral, written write-only: never in plan, state or repository.
    token_file = parse(INFRA / "serve_token.tf")
    assert "serve_token" in token_file["ephemeral"][0]["random_password"]
    version = one("aws_secretsmanager_secret_version", "serve_token", INFRA)
    assert version["secret_string_wo"] == "${ephemeral.random_password.serve_token.result}"
    assert "secret_string" not in version
    secret = one("aws_secretsmanager_secret", "serve_token", INFRA)
    assert secret["kms_key_id"] == "${module.database.kms_key_arn}"
    root = named(INFRA / "main.tf", "module")
    assert root["compute"]["serve"]["token_secret_arn"] == (
        "${aws_secretsmanager_secret.serve_token.arn}"
    )
    assert root["iam"]["serve_token_secret_arn"] == "${aws_secretsmanager_secret.serve_token.arn}"


def test_serve_roles_are_least_privilege() -> None:
    iam_locals = locals_of(IAM / "main.tf")
    assert iam_locals["ecs_task_roles"]["serve"] == "${var.names.role_serve}"
    # Only the serve execution role reads the token, and no database secret (its application
    # secrets, the read-only MLflow user and the signing key: tests/unit/test_infra_auth.py).
    readers = {
        family: arns
        for family, arns in iam_locals["database_secrets"].items()
        if "serve_token" in str(arns)
    }
    assert readers == {"serve": ["${var.serve_token_secret_arn}"]}
    # The task role writes new objects under live/ and uses the bucket key through S3: no read,
    # no list, no delete, nothing else in the bucket.
    statements = {s["sid"]: s for name, s in policy_statements() if name == "serve"}
    assert set(statements) == {"WriteLiveTraffic", "UseBucketKey"}
    assert statements["WriteLiveTraffic"]["actions"] == ["s3:PutObject"]
    assert statements["WriteLiveTraffic"]["resources"] == [
        "${var.data_bucket_arn}/${var.live_prefix}*"
    ]
    assert named(IAM / "variables.tf", "variable")["live_prefix"]["default"] == "live/"
    kms = statements["UseBucketKey"]
    assert kms["resources"] == ["${var.s3_kms_key_arn}"]
    assert kms["condition"][0]["values"] == ["s3.${var.region}.amazonaws.com"]
    policy = one("aws_iam_role_policy", "serve", IAM)
    assert policy["role"] == '${aws_iam_role.task["serve"].id}'
    # Flow runs (the monitor) may read what the service writes, and write drift plots.
    prefixes = locals_of(MODULES / "storage" / "locals.tf")["state_prefixes"]
    assert "live/" in prefixes and "reports/" in prefixes
