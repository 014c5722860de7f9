"""Structural tests of the Terraform in infra/, on HCL parsed by python-hcl2.

They assert the security properties the stack promises (private network, encrypted and
TLS-only buckets, private encrypted database, least-privilege roles, tags everywhere) without
Terraform or any provider. infra/check.sh runs fmt, `terraform test` and checkov.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

hcl2 = pytest.importorskip("hcl2")

INFRA = Path(__file__).resolve().parents[2] / "infra"
MODULES = INFRA / "modules"
SERVICE_MODULES = ["network", "storage", "database", "iam", "compute"]

# Resource types of hashicorp/aws that take no `tags` argument.
UNTAGGABLE = {
    "aws_ecr_lifecycle_policy",
    "aws_ecs_cluster_capacity_providers",
    "aws_iam_role_policy",
    "aws_iam_role_policy_attachment",
    "aws_kms_alias",
    "aws_route_table_association",
    "aws_s3_bucket_lifecycle_configuration",
    "aws_s3_bucket_logging",
    "aws_s3_bucket_notification",
    "aws_s3_bucket_ownership_controls",
    "aws_s3_bucket_policy",
    "aws_s3_bucket_public_access_block",
    "aws_s3_bucket_server_side_encryption_configuration",
    "aws_s3_bucket_versioning",
    "aws_secretsmanager_secret_version",
}

# The only actions allowed on Resource "*": AWS offers no resource-level permission for them.
UNSCOPABLE_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecs:DeregisterTaskDefinition",
    "ecs:DescribeTaskDefinition",
    "ecs:ListTaskDefinitions",
    "ecs:RegisterTaskDefinition",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
}


# --- parsing helpers ---------------------------------------------------------------


def unquote(value: Any) -> Any:
    """python-hcl2 8 keeps the quotes of string literals and block labels: drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def normalize(node: Any) -> Any:
    if isinstance(node, dict):
        return {unquote(k): normalize(v) for k, v in node.items()}
    if isinstance(node, list):
        return [normalize(item) for item in node]
    return unquote(node)


@cache
def parse(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return normalize(hcl2.load(handle))


def tf_files(directory: Path = INFRA) -> list[Path]:
    return sorted(directory.rglob("*.tf"))


def blocks(kind: str, directory: Path = INFRA) -> Iterator[tuple[Path, str, str, dict]]:
    """Yield (file, type, name, body) for every `resource`/`data` block under directory."""
    for path in tf_files(directory):
        for entry in parse(path).get(kind, []):
            for type_, named in entry.items():
                for name, body in named.items():
                    yield path, type_, name, body


def resources(type_: str | None = None, directory: Path = INFRA) -> list[tuple[Path, str, dict]]:
    return [
        (path, name, body)
        for path, t, name, body in blocks("resource", directory)
        if type_ is None or t == type_
    ]


def one(type_: str, name: str, directory: Path = INFRA) -> dict:
    found = [body for _, n, body in resources(type_, directory) if n == name]
    assert len(found) == 1, f"expected exactly one {type_}.{name}, found {len(found)}"
    return found[0]


def sub(body: dict, key: str) -> dict:
    """First nested block `key` of a block body."""
    value = body[key]
    return value[0] if isinstance(value, list) else value


def text(path: Path) -> str:
    return path.read_text()


def locals_of(path: Path) -> dict[str, Any]:
    """Every `locals` entry of one file, merged."""
    merged: dict[str, Any] = {}
    for entry in parse(path).get("locals", []):
        merged.update({k: v for k, v in entry.items() if not k.startswith("__")})
    return merged


def named(path: Path, kind: str) -> dict[str, Any]:
    """`variable` / `output` / `module` blocks of one file, by name."""
    return {name: body for entry in parse(path).get(kind, []) for name, body in entry.items()}


def settings_defaults() -> dict[str, dict[str, Any]]:
    main = parse(MODULES / "settings" / "main.tf")
    for entry in main["locals"]:
        if "defaults" in entry:
            return entry["defaults"]
    raise AssertionError("modules/settings has no local.defaults")


# --- the whole tree ---------------------------------------------------------------


def test_layout() -> None:
    for name in [*SERVICE_MODULES, "settings"]:
        assert (MODULES / name / "variables.tf").is_file(), name
        assert (MODULES / name / "outputs.tf").is_file(), name
    assert (INFRA / "envs" / "dev.tfvars").is_file()
    assert (INFRA / "envs" / "prod.tfvars").is_file()
    assert list((INFRA / "tests").glob("*.tftest.hcl"))
    assert (INFRA / "README.md").is_file()


def test_every_file_parses() -> None:
    files = tf_files()
    assert len(files) > 20
    for path in files:
        assert isinstance(parse(path), dict), path


def test_variables_are_typed_and_described() -> None:
    for path in tf_files():
        for entry in parse(path).get("variable", []):
            for name, body in entry.items():
                assert "type" in body, f"{path}: variable {name} has no type"
                assert body.get("description"), f"{path}: variable {name} has no description"


def test_outputs_are_described() -> None:
    for path in tf_files():
        for entry in parse(path).get("output", []):
            for name, body in entry.items():
                assert body.get("description"), f"{path}: output {name} has no description"


def test_every_taggable_resource_is_tagged() -> None:
    missing = [
        f"{path.relative_to(INFRA)}: {type_}.{name}"
        for path, type_, name, body in blocks("resource")
        if type_ not in UNTAGGABLE and "tags" not in body
    ]
    assert not missing, "resources without tags: " + ", ".join(missing)


def test_root_composes_all_modules() -> None:
    main = parse(INFRA / "main.tf")
    sources = {name: body["source"] for entry in main["module"] for name, body in entry.items()}
    assert sources == {name: f"./modules/{name}" for name in [*SERVICE_MODULES, "settings"]}


def test_provider_versions_are_pinned() -> None:
    for directory in [INFRA, *(MODULES / name for name in SERVICE_MODULES)]:
        terraform = parse(directory / "versions.tf")["terraform"][0]
        aws = terraform["required_providers"][0]["aws"]
        assert aws["source"] == "hashicorp/aws", directory
        assert re.search(r">= ?6\.0", aws["version"]) and "< 7" in aws["version"], directory
        assert terraform["required_version"].startswith(">= 1.1"), directory


def test_settings_module_is_provider_free() -> None:
    settings = MODULES / "settings"
    assert not list(blocks("resource", settings))
    assert not list(blocks("data", settings))
    assert "required_providers" not in text(settings / "versions.tf")
    assert "provider " not in "".join(text(p) for p in tf_files(settings))


def test_no_secrets_in_the_repo() -> None:
    files = [*tf_files(), *(INFRA / "envs").glob("*.tfvars")]
    for path in files:
        content = text(path)
        assert not re.search(r"AKIA[0-9A-Z]{16}", content), path
        # Literal passwords; the only password expression is the ephemeral random value.
        assert not re.search(r'(?m)^\s*(master_)?password(_wo)?\s*=\s*"', content), path
        for match in re.finditer(r"(?m)^\s*password(_wo)?\s*=\s*(.+)$", content):
            assert match.group(2).startswith("ephemeral.random_password."), (path, match.group(0))
    for path in (INFRA / "envs").glob("*.tfvars"):
        assert not re.search(r"(?i)password|secret_key|access_key", text(path)), path


def test_checkov_skips_carry_reasons() -> None:
    skips = []
    for path in tf_files():
        for line in text(path).splitlines():
            if "checkov:skip" in line:
                match = re.fullmatch(r"\s*#checkov:skip=(CKV2?_AWS_\d+):(.+)", line)
                assert match, f"{path}: malformed skip: {line.strip()}"
                assert len(match.group(2).split()) >= 6, f"{path}: skip without a real reason"
                skips.append(match.group(1))
    assert skips, "expected documented skips"


def test_tfvars_cover_both_environments() -> None:
    required = {
        name
        for entry in parse(INFRA / "variables.tf")["variable"]
        for name, body in entry.items()
        if "default" not in body
    }
    for env in ["dev", "prod"]:
        values = parse(INFRA / "envs" / f"{env}.tfvars")
        assert values["environment"] == env
        assert required <= set(values), f"{env}.tfvars misses {required - set(values)}"


# --- network ------------------------------------------------------------------------


NETWORK = MODULES / "network"


def test_network_has_no_internet_path() -> None:
    for forbidden in [
        "aws_internet_gateway",
        "aws_nat_gateway",
        "aws_eip",
        "aws_egress_only_internet_gateway",
    ]:
        assert not resources(forbidden), forbidden
    subnet = one("aws_subnet", "private", NETWORK)
    assert subnet["map_public_ip_on_launch"] is False
    assert not resources("aws_route", NETWORK)


def test_s3_gateway_endpoint_on_private_route_table() -> None:
    endpoint = one("aws_vpc_endpoint", "s3", NETWORK)
    assert endpoint["vpc_endpoint_type"] == "Gateway"
    assert endpoint["service_name"].endswith(".s3")
    assert "aws_route_table.private.id" in str(endpoint["route_table_ids"])


def test_no_ingress_from_anywhere() -> None:
    open_cidrs = {"0.0.0.0/0", "::/0"}
    for _, name, body in resources("aws_vpc_security_group_ingress_rule"):
        assert body.get("cidr_ipv4") not in open_cidrs, name
        assert "cidr_ipv6" not in body, name
        assert body.get("description"), f"ingress rule {name} has no description"
    for _, name, body in resources("aws_vpc_security_group_egress_rule"):
        assert body.get("cidr_ipv4") not in open_cidrs, name
        assert body.get("description"), f"egress rule {name} has no description"
    for _, name, body in resources("aws_security_group"):
        assert "ingress" not in body and "egress" not in body, f"{name}: use rule resources"
    assert not resources("aws_security_group_rule")
    default = one("aws_default_security_group", "this", NETWORK)
    assert "ingress" not in default and "egress" not in default
    # The only CIDR ingress is the VPC itself plus client_cidrs, which reject 0.0.0.0/0.
    assert "0.0.0.0/0" in str(parse(INFRA / "variables.tf")["variable"])  # the validation


def test_database_accepts_only_the_task_security_groups() -> None:
    rule = one("aws_vpc_security_group_ingress_rule", "database_from", NETWORK)
    assert "referenced_security_group_id" in rule and "cidr_ipv4" not in rule
    assert rule["from_port"] == rule["to_port"] == 5432


def test_vpc_flow_logs() -> None:
    flow_log = one("aws_flow_log", "this", NETWORK)
    assert flow_log["traffic_type"] == "ALL"


# --- storage --------------------------------------------------------------------------


STORAGE = MODULES / "storage"


def test_buckets_are_versioned_private_and_access_logged() -> None:
    for name in ["this", "logs"]:
        versioning = one("aws_s3_bucket_versioning", name, STORAGE)
        assert sub(versioning, "versioning_configuration")["status"] == "Enabled"
        block = one("aws_s3_bucket_public_access_block", name, STORAGE)
        for flag in [
            "block_public_acls",
            "block_public_policy",
            "ignore_public_acls",
            "restrict_public_buckets",
        ]:
            assert block[flag] is True, (name, flag)
        ownership = one("aws_s3_bucket_ownership_controls", name, STORAGE)
        assert sub(ownership, "rule")["object_ownership"] == "BucketOwnerEnforced"
    logging = one("aws_s3_bucket_logging", "this", STORAGE)
    assert logging["for_each"] == "${aws_s3_bucket.this}"
    assert logging["target_bucket"] == "${aws_s3_bucket.logs.id}"
    for _, _, bucket in resources("aws_s3_bucket", STORAGE):
        assert bucket["force_destroy"] is False


def test_data_and_artifacts_buckets_use_the_customer_key() -> None:
    sse = one("aws_s3_bucket_server_side_encryption_configuration", "this", STORAGE)
    rule = sub(sse, "rule")
    default = sub(rule, "apply_server_side_encryption_by_default")
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.s3.arn}"
    assert rule["bucket_key_enabled"] is True
    # The log bucket cannot use SSE-KMS (S3 access log and ALB log delivery), but is encrypted.
    logs = sub(
        sub(one("aws_s3_bucket_server_side_encryption_configuration", "logs", STORAGE), "rule"),
        "apply_server_side_encryption_by_default",
    )
    assert logs["sse_algorithm"] == "AES256"


def test_every_kms_key_rotates_and_has_a_policy() -> None:
    keys = resources("aws_kms_key")
    assert len(keys) == 3  # storage, database, compute
    for path, name, key in keys:
        assert key["enable_key_rotation"] is True, (path, name)
        assert "policy" in key, (path, name)
        assert key["deletion_window_in_days"] == "${var.kms_deletion_window_days}", (path, name)


def test_bucket_policies_deny_insecure_transport() -> None:
    for name in ["this", "logs"]:
        policy = one("aws_s3_bucket_policy", name, STORAGE)["policy"]
        assert "DenyInsecureTransport" in policy
        assert re.search(r"aws:SecureTransport.{0,10}=.{0,10}false", policy), name
        # Wildcard actions only ever appear in Deny statements.
        statements = policy.split("Sid")
        for statement in statements:
            if '"s3:*"' in statement:
                assert re.search(r'Effect\s*=\s*"Deny"', statement), statement


def test_landing_moves_to_cheaper_storage_and_is_never_expired() -> None:
    lifecycle = text(STORAGE / "main.tf")
    body = one("aws_s3_bucket_lifecycle_configuration", "this", STORAGE)
    rules = body["dynamic"]
    landing = next(r["rule"] for r in rules if "landing-to-cheaper-storage" in str(r))
    content = landing["content"][0]
    classes = [t["storage_class"] for t in content["transition"]]
    assert classes == ["STANDARD_IA", "GLACIER_IR"]
    assert "expiration" not in content and "noncurrent_version_expiration" not in content
    assert "landing/" in lifecycle
    locals_ = text(STORAGE / "locals.tf")
    assert re.search(r'if prefix != "landing/"', locals_), "landing/ must not get expiring rules"
    abort = sub(body, "rule")
    assert (
        abort["filter"] == [{}]
        or abort["filter"] == {}
        or abort["filter"] == [{"__is_block__": True}]
    )
    assert sub(abort, "abort_incomplete_multipart_upload")["days_after_initiation"] <= 7


# --- database --------------------------------------------------------------------------


DATABASE = MODULES / "database"


def test_database_is_private_encrypted_and_backed_up() -> None:
    db = one("aws_db_instance", "this", DATABASE)
    assert db["engine"] == "postgres"
    assert db["publicly_accessible"] is False
    assert db["storage_encrypted"] is True
    assert db["kms_key_id"] == "${aws_kms_key.database.arn}"
    assert db["backup_retention_period"] == "${var.backup_retention_days}"
    assert db["deletion_protection"] == "${var.deletion_protection}"
    assert db["skip_final_snapshot"] == "${!var.deletion_protection}"
    assert db["copy_tags_to_snapshot"] is True
    assert db["performance_insights_kms_key_id"] == "${aws_kms_key.database.arn}"
    assert "password" not in db and "manage_master_user_password" not in db
    assert db["password_wo"] == "${ephemeral.random_password.master.result}"


def test_database_forces_tls() -> None:
    group = one("aws_db_parameter_group", "this", DATABASE)
    params = {p["name"]: p["value"] for p in group["parameter"]}
    assert params["rds.force_ssl"] == "1"


def test_password_lives_in_secrets_manager_only() -> None:
    secret = one("aws_secretsmanager_secret", "master", DATABASE)
    assert secret["kms_key_id"] == "${aws_kms_key.database.arn}"
    version = one("aws_secretsmanager_secret_version", "master", DATABASE)
    assert "secret_string_wo" in version and "secret_string" not in version
    main = parse(DATABASE / "main.tf")
    assert "random_password" in main["ephemeral"][0]  # never stored in state


def test_prod_protects_the_database_and_dev_stays_cheap() -> None:
    defaults = settings_defaults()
    prod, dev = defaults["prod"], defaults["dev"]
    assert prod["deletion_protection"] is True and prod["db_multi_az"] is True
    assert prod["db_backup_retention_days"] >= 7
    assert dev["db_backup_retention_days"] >= 1
    assert dev["db_instance_class"].startswith("db.t4g.")
    assert prod["log_retention_days"] >= 365


# --- compute ------------------------------------------------------------------------------


COMPUTE = MODULES / "compute"


def test_load_balancer_is_internal_and_logged() -> None:
    lb = one("aws_lb", "this", COMPUTE)
    assert lb["internal"] is True
    assert lb["drop_invalid_header_fields"] is True
    assert sub(lb, "access_logs")["enabled"] is True


def test_services_are_private_fargate_tasks() -> None:
    service = one("aws_ecs_service", "this", COMPUTE)
    network = sub(service, "network_configuration")
    assert network["assign_public_ip"] is False
    assert service["launch_type"] == "FARGATE"
    assert sub(service, "deployment_circuit_breaker")["rollback"] is True
    task = one("aws_ecs_task_definition", "this", COMPUTE)
    assert task["network_mode"] == "awsvpc"
    assert task["execution_role_arn"] != task["task_role_arn"]
    compute_main = text(COMPUTE / "main.tf")
    assert "readonlyRootFilesystem = true" in compute_main
    assert "privileged             = false" in compute_main
    # Each service's password only as a secret from its own secret (main.tf); the bootstrap
    # task's secrets are in services.tf, and never in an environment variable.
    assert re.search(r'valueFrom = "\$\{db\.secret_arn\}:password::"', compute_main)
    services = text(COMPUTE / "services.tf")
    assert not re.search(r'name = "PGPASSWORD", value\s*=', compute_main + services)


def test_logs_have_retention_and_kms() -> None:
    groups = resources("aws_cloudwatch_log_group")
    assert groups
    for path, name, group in groups:
        assert group["retention_in_days"].startswith("${var."), (path, name)
        assert group["kms_key_id"].startswith("${aws_kms_key."), (path, name)


def test_cluster_has_container_insights() -> None:
    cluster = one("aws_ecs_cluster", "this", COMPUTE)
    setting = sub(cluster, "setting")
    assert (setting["name"], setting["value"]) == ("containerInsights", "enabled")


def test_image_repository_is_immutable_scanned_and_encrypted() -> None:
    repo = one("aws_ecr_repository", "this", COMPUTE)
    assert repo["image_tag_mutability"] == "IMMUTABLE"
    assert sub(repo, "image_scanning_configuration")["scan_on_push"] is True
    assert sub(repo, "encryption_configuration")["encryption_type"] == "KMS"


# --- iam ----------------------------------------------------------------------------------


IAM = MODULES / "iam"


def policy_statements() -> Iterator[tuple[str, dict]]:
    for _, type_, name, body in blocks("data", IAM):
        if type_ == "aws_iam_policy_document":
            for statement in body.get("statement", []):
                yield name, statement


def test_one_role_per_service() -> None:
    task_roles = one("aws_iam_role", "task", IAM)
    locals_ = parse(IAM / "main.tf")["locals"][0]
    assert set(locals_["ecs_task_roles"]) == {
        "prefect_server",
        "mlflow",
        "worker",
        "flow_run",
        "serve",
    }
    assert "for_each" in task_roles
    assert {name for _, name, _ in resources("aws_iam_role", IAM)} == {
        "execution",
        "task",
        "rds_monitoring",
    }
    assert not resources("aws_iam_user") and not resources("aws_iam_access_key")


def test_no_wildcard_actions() -> None:
    for name, statement in policy_statements():
        assert statement.get("effect", "Allow") == "Allow"
        for action in statement["actions"]:
            assert "*" not in action, f"{name}: wildcard action {action}"
    # KMS key policies list their admin actions explicitly instead of a kms wildcard.
    for key_module in ["storage", "database", "compute"]:
        locals_file = next((MODULES / key_module).glob("*locals.tf"))
        actions = next(
            e["kms_admin_actions"] for e in parse(locals_file)["locals"] if "kms_admin_actions" in e
        )
        assert len(actions) > 20 and not [a for a in actions if "*" in a], key_module
        for _, _, key in resources("aws_kms_key", MODULES / key_module):
            assert (
                "Action    = local.kms_admin_actions" in key["policy"]
                or "local.kms_admin_actions" in key["policy"]
            )
            assert not re.search(r'Action\s*=\s*"[^"]*\*', key["policy"]), key_module


def test_resource_wildcards_only_for_unscopable_actions() -> None:
    for name, statement in policy_statements():
        resources_ = statement.get("resources", [])
        if isinstance(resources_, list) and "*" in resources_:
            assert set(statement["actions"]) <= UNSCOPABLE_ACTIONS, (name, statement["sid"])
            assert statement["resources"] == ["*"]


def test_bucket_access_is_scoped_to_prefixes() -> None:
    statements = {(name, s["sid"]): s for name, s in policy_statements()}
    for (name, sid), statement in statements.items():
        for action in statement["actions"]:
            if action.startswith("s3:") and action.endswith("Object"):
                resources_ = statement["resources"]
                if isinstance(resources_, str):  # a for expression over prefixes
                    assert re.search(r'_bucket_arn\}/\$\{prefix\}\*"\]\}$', resources_), (name, sid)
                    continue
                for resource in resources_:
                    assert re.search(r"_bucket_arn\}/.+\*$", resource), (name, sid, resource)
            if action == "s3:ListBucket":
                assert statement["condition"][0]["variable"] == "s3:prefix", (name, sid)
    landing = statements[("flow_run", "LandingIsWriteOnce")]
    assert "s3:DeleteObject" not in landing["actions"]
    assert landing["resources"] == ["${var.data_bucket_arn}/${local.landing_prefix}*"]


def test_worker_can_only_pass_flow_run_roles_to_ecs() -> None:
    statements = {s["sid"]: s for name, s in policy_statements() if name == "worker"}
    pass_role = statements["PassFlowRunRoles"]
    assert pass_role["condition"][0]["values"] == ["ecs-tasks.amazonaws.com"]
    assert len(pass_role["resources"]) == 2
    run_task = statements["RunFlowRunTasksInThisCluster"]
    assert run_task["condition"][0]["variable"] == "ecs:cluster"


# --- budget and outputs ---------------------------------------------------------------------


def test_budget_alarm() -> None:
    budget = one("aws_budgets_budget", "monthly", INFRA)
    assert budget["time_unit"] == "MONTHLY"
    assert budget["limit_amount"] == "${tostring(local.sizing.monthly_budget_usd)}"
    assert {n["notification_type"] for n in budget["notification"]} == {"ACTUAL", "FORECASTED"}


def test_outputs_give_perennial_env_and_work_pool_inputs() -> None:
    outputs = {
        name: body
        for entry in parse(INFRA / "outputs.tf")["output"]
        for name, body in entry.items()
    }
    env = outputs["perennial_env"]["value"]
    assert set(env) == {
        "PERENNIAL_HOME",
        "PERENNIAL_MLFLOW_URI",
        "PERENNIAL_OPTUNA_STORAGE",
        "PREFECT_API_URL",
        "PERENNIAL_S3_KMS_KEY_ID",
    }
    assert env["PERENNIAL_HOME"].startswith("s3://")
    assert env["PERENNIAL_OPTUNA_STORAGE"] == "${local.optuna_storage}"
    optuna = locals_of(INFRA / "outputs.tf")["optuna_storage"]
    assert optuna.startswith(
        "postgresql+psycopg://${module.settings.db_services.flow_run.username}@"
    )
    assert "master_username" not in text(INFRA / "outputs.tf")  # Optuna never as the master user
    assert ":password" not in str(env) and "secret" not in str(env).lower()
    for name in [
        "ecs_cluster_arn",
        "vpc_id",
        "subnet_ids",
        "security_group_id",
        "task_role_arn",
        "execution_role_arn",
        "image",
        "log_group_name",
        "work_pool_name",
        "db_secret_arn",
    ]:
        assert name in outputs, name
    assert "sensitive" not in outputs["perennial_env"]  # no password in any URL


# --- HTTPS only in prod -----------------------------------------------------------------------


def test_prod_load_balancer_serves_https_only() -> None:
    defaults = settings_defaults()
    assert defaults["prod"]["https_only"] is True and defaults["dev"]["https_only"] is False
    sizing_checks = [
        p["condition"]
        for p in named(MODULES / "settings" / "outputs.tf", "output")["sizing"]["precondition"]
    ]
    assert '${var.environment != "prod" || local.sizing.https_only}' in sizing_checks
    compute = named(INFRA / "main.tf", "module")["compute"]
    assert compute["https_only"] == "${local.sizing.https_only}"
    # The listeners refuse to exist in an https_only environment without a certificate...
    listener = one("aws_lb_listener", "this", COMPUTE)
    conditions = [p["condition"] for p in sub(listener, "lifecycle")["precondition"]]
    assert "${!var.https_only || var.certificate_arn != null}" in conditions
    assert any("var.account_id" in c and "var.region" in c for c in conditions)
    # ...and never fall back to HTTP there: https_only alone makes them HTTPS.
    compute_locals = locals_of(COMPUTE / "main.tf")
    assert listener["protocol"] == "${local.listener_protocol}"
    assert compute_locals["listener_protocol"] == '${local.use_tls ? "HTTPS" : "HTTP"}'
    assert compute_locals["use_tls"] == "${var.https_only || var.certificate_arn != null}"
    assert listener["ssl_policy"].startswith('${local.use_tls ? "ELBSecurityPolicy-TLS13-1-2')
    # The root variable refuses a prod without a certificate before any plan.
    certificate = named(INFRA / "variables.tf", "variable")["certificate_arn"]
    validations = [v["condition"] for v in certificate["validation"]]
    assert '${var.environment != "prod" || var.certificate_arn != null}' in validations
    prod = parse(INFRA / "envs" / "prod.tfvars")
    assert re.fullmatch(
        r"arn:aws:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+", prod["certificate_arn"]
    )


def test_no_plain_http_listener_without_redirect() -> None:
    listeners = resources("aws_lb_listener")
    assert listeners
    for path, name, body in listeners:
        action = sub(body, "default_action")
        if body["protocol"] == "HTTP":  # a literal HTTP listener may only redirect to HTTPS
            assert action["type"] == "redirect", (path, name)
            assert sub(action, "redirect")["protocol"] == "HTTPS", (path, name)
        else:
            assert body["protocol"] in {"HTTPS", "${local.listener_protocol}"}, (path, name)
            assert body["certificate_arn"] == "${var.certificate_arn}", (path, name)


# --- one database user and secret per service ---------------------------------------------------


DB_SERVICES = {"prefect_server", "mlflow", "flow_run"}


def test_each_service_has_its_own_database_user() -> None:
    settings = locals_of(MODULES / "settings" / "main.tf")
    services = settings["db_services"]
    assert set(services) == DB_SERVICES  # the worker uses no database
    users = [db["username"] for db in services.values()]
    assert len(set(users)) == len(users)
    assert settings["names"]["db_master_username"] not in users
    assert {db["database"] for db in services.values()} == {
        "${local.names.prefect_db_name}",
        "${local.names.mlflow_db_name}",
        "${local.names.optuna_db_name}",
    }
    database = named(INFRA / "main.tf", "module")["database"]
    assert database["services"] == "${module.settings.db_services}"


def test_one_database_secret_per_service() -> None:
    secret = one("aws_secretsmanager_secret", "service", DATABASE)
    assert secret["for_each"] == "${var.services}"
    assert secret["kms_key_id"] == "${aws_kms_key.database.arn}"
    version = one("aws_secretsmanager_secret_version", "service", DATABASE)
    assert "secret_string_wo" in version and "secret_string" not in version
    assert "ephemeral.random_password.service[each.key].result" in version["secret_string_wo"]
    ephemeral = {
        name: body
        for entry in parse(DATABASE / "main.tf")["ephemeral"]
        for name, body in entry["random_password"].items()
    }
    assert ephemeral["service"]["for_each"] == "${var.services}"
    outputs = named(DATABASE / "outputs.tf", "output")
    assert "aws_secretsmanager_secret.service" in outputs["service_secret_arns"]["value"]


def test_services_log_in_as_their_own_user_never_the_master() -> None:
    compute_locals = locals_of(COMPUTE / "main.tf")
    assert "db.secret_arn" in compute_locals["pg_secrets"]
    assert "db.username" in compute_locals["pg_environment"]
    services = locals_of(COMPUTE / "services.tf")["services"]
    assert {k: v["db_service"] for k, v in services.items()} == {
        "prefect_server": "prefect_server",
        "mlflow": "mlflow",
        "worker": None,
        "serve": None,
    }
    server_url = services["prefect_server"]["environment"][0]["value"]
    assert server_url == "postgresql+asyncpg://${local.pg_url.prefect_server}"
    assert "postgresql://${local.pg_url.mlflow}?sslmode=require" in services["mlflow"]["command"]
    task = one("aws_ecs_task_definition", "this", COMPUTE)
    assert task["execution_role_arn"] == "${var.execution_role_arns[each.key]}"
    assert "local.pg_secrets[each.value.db_service]" in task["container_definitions"]
    assert "master" not in task["container_definitions"]
    # Flow runs (Optuna) get the flow_run user and secret.
    outputs = named(COMPUTE / "outputs.tf", "output")
    assert outputs["flow_run_secrets"]["value"].startswith('${concat(local.pg_secrets["flow_run"],')
    assert 'local.pg_environment["flow_run"]' in outputs["flow_run_environment"]["value"]
    # The master user and secret appear in one task definition only: the bootstrap.
    bootstrap = one("aws_ecs_task_definition", "db_bootstrap", COMPUTE)
    assert "var.database.master_secret_arn" in bootstrap["container_definitions"]
    assert "var.database.master_username" in bootstrap["container_definitions"]
    assert 'file("${path.module}/db_bootstrap.py")' in bootstrap["container_definitions"]
    assert bootstrap["execution_role_arn"] == '${var.execution_role_arns["db_bootstrap"]}'
    assert (COMPUTE / "db_bootstrap.py").is_file()
    main_and_services = text(COMPUTE / "main.tf") + text(COMPUTE / "services.tf")
    assert main_and_services.count("master_secret_arn") == 1
    assert main_and_services.count("master_username") == 1


def test_execution_roles_read_only_their_own_secret() -> None:
    # Database secrets here; each family's application secrets: tests/unit/test_infra_auth.py.
    secrets = locals_of(IAM / "main.tf")["database_secrets"]
    for service in DB_SERVICES:
        assert secrets[service] == [f'${{var.db_service_secret_arns["{service}"]}}'], service
    assert secrets["worker"] == []
    assert "var.db_master_secret_arn" in secrets["db_bootstrap"]
    assert text(IAM / "main.tf").count("db_master_secret_arn") == 1  # the bootstrap only
    role = one("aws_iam_role", "execution", IAM)
    assert role["for_each"] == "${local.execution_secrets}"
    document = next(
        body
        for _, type_, name, body in blocks("data", IAM)
        if type_ == "aws_iam_policy_document" and name == "execution"
    )
    assert document["for_each"] == "${local.execution_secrets}"
    dynamic = {d["statement"]["content"][0]["sid"]: d["statement"] for d in document["dynamic"]}
    assert dynamic["ReadOwnSecrets"]["content"][0]["resources"] == "${statement.value}"
    assert dynamic["ReadOwnSecrets"]["content"][0]["actions"] == ["secretsmanager:GetSecretValue"]
    pass_role = next(
        s for name, s in policy_statements() if name == "worker" and s["sid"] == "PassFlowRunRoles"
    )
    assert pass_role["resources"] == [
        '${aws_iam_role.task["flow_run"].arn}',
        '${aws_iam_role.execution["flow_run"].arn}',
    ]


# --- landing/ write-once on the bucket side ------------------------------------------------


def test_landing_objects_are_write_once_in_the_bucket_policy() -> None:
    policy = one("aws_s3_bucket_policy", "this", STORAGE)["policy"]
    assert 'each.key == "data" ? [local.landing_write_once] : []' in policy
    statement = locals_of(STORAGE / "main.tf")["landing_write_once"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == {"AWS": "*"}
    assert statement["Action"] == "s3:PutObject"
    assert statement["Resource"] == '${aws_s3_bucket.this["data"].arn}/landing/*'
    # Denied unless the put carries If-None-Match; the multipart steps that cannot carry it
    # (create, upload part) are exempted, their completion is not.
    assert statement["Condition"] == {
        "Null": {"s3:if-none-match": "true"},
        "Bool": {"s3:ObjectCreationOperation": "true"},
    }


# --- the image ------------------------------------------------------------------------------


def dockerfile_workdir() -> str:
    found = re.findall(r"(?m)^WORKDIR\s+(\S+)", text(INFRA / "Dockerfile"))
    assert len(found) == 1, found
    return found[0]


def test_services_and_flow_runs_run_the_image_of_the_dockerfile() -> None:
    import yaml

    compute_locals = locals_of(COMPUTE / "main.tf")
    assert compute_locals["image"] == "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
    assert compute_locals["common_container"]["image"] == "${local.image}"
    outputs = named(INFRA / "outputs.tf", "output")
    assert outputs["ecs_work_pool_job_variables"]["value"]["image"] == "${module.compute.image}"
    tag = named(INFRA / "variables.tf", "variable")["image_tag"]
    assert 'var.image_tag != "latest"' in tag["validation"][0]["condition"]
    # prefect-prod.yaml runs the flows from the image's WORKDIR, with dataset names.
    prod = yaml.safe_load(text(INFRA / "prefect-prod.yaml"))
    pull = prod["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"]
    assert pull == dockerfile_workdir()
    configs = {path.stem for path in (INFRA.parent / "configs").glob("*.yaml")}
    for deployment in prod["deployments"]:
        parameters = deployment.get("parameters") or {}
        assert "config_path" not in parameters, deployment["name"]
        assert parameters.get("dataset") in configs, deployment["name"]  # a name, not a path
        for trigger in deployment.get("triggers", []):
            dataset = trigger["parameters"]["dataset"]
            assert trigger["match"]["prefect.resource.id"] == f"perennial.dataset.{dataset}"
    readme = text(INFRA / "README.md")
    assert "docker build -f infra/Dockerfile" in readme
    assert "docker build -t" not in readme
