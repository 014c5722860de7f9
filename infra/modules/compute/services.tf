# Task definitions and services. Every container has a read-only root filesystem,
# runs unprivileged, logs to the KMS-encrypted log group and gets its own service's secrets
# (database password, serve token, the application secrets of its family: local.app_secrets)
# only as secrets injected by the ECS agent, with its own execution role.

locals {
  services = {
    prefect_server = {
      port       = local.ports.prefect
      lb         = "prefect"
      db_service = "prefect_server"
      sg         = "app"
      secrets    = []
      min_health = 0 # one server at a time: no overlapping schema migrations
      max_health = 100
      command    = ["prefect", "server", "start", "--host", "0.0.0.0", "--port", tostring(local.ports.prefect)]
      # Locked down like served mode (flows/supervision/prefect_server.py): the API asks for the
      # auth string (PREFECT_SERVER_API_AUTH_STRING, a secret), checks CSRF tokens and allows
      # cross-origin calls from its own UI only.
      environment = [
        { name = "PREFECT_API_DATABASE_CONNECTION_URL", value = "postgresql+asyncpg://${local.pg_url.prefect_server}" },
        { name = "PREFECT_UI_API_URL", value = local.prefect_api_url },
        { name = "PREFECT_SERVER_ANALYTICS_ENABLED", value = "false" },
        { name = "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", value = "true" },
        { name = "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS", value = local.prefect_ui_origin },
        { name = "PREFECT_SERVER_API_CORS_ALLOWED_METHODS", value = "GET,POST,PUT,PATCH,DELETE,OPTIONS" },
      ]
    }
    mlflow = {
      port       = local.ports.mlflow
      lb         = "mlflow"
      db_service = "mlflow"
      sg         = "app"
      secrets    = []
      min_health = 100
      max_health = 200
      # The basic-auth app: every request signs in (admin, flow_run or serve: modules/settings
      # mlflow_users). The shell writes the auth config (local.mlflow_auth_config, no secret)
      # to the scratch volume, then becomes the server ($0 "$@": the arguments that follow).
      command = [
        "sh", "-c", "umask 077 && printf '%s\\n' \"$PERENNIAL_MLFLOW_AUTH_CONFIG\" > \"$MLFLOW_AUTH_CONFIG_PATH\" && exec \"$0\" \"$@\"",
        "mlflow", "server", "--app-name", "basic-auth", "--host", "0.0.0.0", "--port", tostring(local.ports.mlflow),
        "--backend-store-uri", "postgresql://${local.pg_url.mlflow}?sslmode=require",
        "--artifacts-destination", "s3://${var.artifacts_bucket}/mlflow",
      ]
      environment = [
        { name = "MLFLOW_AUTH_CONFIG_PATH", value = local.mlflow_auth_config_path },
        { name = "PERENNIAL_MLFLOW_AUTH_CONFIG", value = local.mlflow_auth_config },
        { name = "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS", value = local.mlflow_url },
        { name = "MLFLOW_SERVER_ALLOWED_HOSTS", value = "${aws_lb.this.dns_name},${aws_lb.this.dns_name}:${local.ports.mlflow}" },
        { name = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION", value = "false" },
        { name = "MLFLOW_DISABLE_TELEMETRY", value = "true" },
        { name = "AWS_DEFAULT_REGION", value = var.region },
      ]
    }
    worker = {
      port       = null
      lb         = null
      db_service = null
      sg         = "runner"
      secrets    = []
      min_health = 0
      max_health = 100
      command    = ["prefect", "worker", "start", "--pool", var.names.work_pool, "--type", "ecs"]
      environment = [
        { name = "PREFECT_API_URL", value = local.prefect_api_url },
        { name = "AWS_DEFAULT_REGION", value = var.region },
      ]
    }
    # perennial serve: the champion of one dataset over HTTP, behind the internal load balancer.
    # No database; models from the MLflow server; sampled live traffic to live/ of the state
    # root; the bearer token injected from Secrets Manager by the ECS agent, never plain env.
    serve = {
      port       = local.ports.serve
      lb         = "serve"
      db_service = null
      sg         = "serve"
      secrets    = [{ name = "PERENNIAL_SERVE_TOKEN", valueFrom = var.serve.token_secret_arn }]
      min_health = 100 # a new task warms up before the old one stops: no gap in scoring
      max_health = 200
      command = [
        "perennial", "serve", "--host", "0.0.0.0", "--port", tostring(local.ports.serve),
        "--config", "configs/${var.serve.dataset}.yaml",
      ]
      environment = [
        { name = "PERENNIAL_HOME", value = "s3://${var.serve.data_bucket}" },
        { name = "PERENNIAL_MLFLOW_URI", value = local.mlflow_url },
        { name = "PERENNIAL_S3_KMS_KEY_ID", value = var.serve.s3_kms_key_arn },
        { name = "PERENNIAL_SERVE__LIVE_SAMPLE_RATE", value = tostring(var.serve.live_sample_rate) },
        { name = "MLFLOW_DISABLE_TELEMETRY", value = "true" },
        { name = "AWS_DEFAULT_REGION", value = var.region },
      ]
    }
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each = local.services

  family                   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_sizes[each.key].cpu
  memory                   = var.task_sizes[each.key].memory
  execution_role_arn       = var.execution_role_arns[each.key]
  task_role_arn            = var.task_role_arns[each.key]

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = local.scratch_volume
  }

  container_definitions = jsonencode([merge(local.common_container, {
    name         = replace(each.key, "_", "-")
    command      = each.value.command
    environment  = concat(each.value.environment, local.writable_environment, each.value.db_service == null ? [] : local.pg_environment[each.value.db_service])
    secrets      = concat(each.value.db_service == null ? [] : local.pg_secrets[each.value.db_service], each.value.secrets, local.app_secrets[each.key])
    portMappings = each.value.port == null ? [] : [{ containerPort = each.value.port, protocol = "tcp" }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.ecs.name
        awslogs-region        = var.region
        awslogs-stream-prefix = replace(each.key, "_", "-")
      }
    }
  })])

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_ecs_service" "this" {
  for_each = local.services

  name                               = replace(each.key, "_", "-")
  cluster                            = aws_ecs_cluster.this.arn
  task_definition                    = aws_ecs_task_definition.this[each.key].arn
  desired_count                      = 1
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_execute_command             = false
  deployment_minimum_healthy_percent = each.value.min_health
  deployment_maximum_percent         = each.value.max_health
  health_check_grace_period_seconds  = each.value.lb == null ? null : 180

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [var.security_group_ids[each.value.sg]]
    assign_public_ip = false
  }

  dynamic "load_balancer" {
    for_each = each.value.lb == null ? [] : [each.value.lb]

    content {
      target_group_arn = aws_lb_target_group.this[load_balancer.value].arn
      container_name   = replace(each.key, "_", "-")
      container_port   = each.value.port
    }
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  tags = merge(var.tags, { Service = each.key })

  depends_on = [aws_lb_listener.this]
}

# --- database bootstrap: one-off task, run by hand after apply (infra/README.md) --------------

# The only task that logs in as the master user. It creates each service's user and database
# and sets the passwords from the services' secrets, then MLflow's basic-auth users and their
# permissions (db_bootstrap.py), and is run with
# `aws ecs run-task` after the first apply and after every password rotation. Not a service,
# and not a container of the server tasks: only its execution role can read the master secret.
resource "aws_ecs_task_definition" "db_bootstrap" {
  family                   = var.names.db_bootstrap
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = var.execution_role_arns["db_bootstrap"]

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.cpu_architecture
  }

  volume {
    name = local.scratch_volume
  }

  container_definitions = jsonencode([merge(local.common_container, {
    name    = "db-bootstrap"
    command = ["python", "-c", file("${path.module}/db_bootstrap.py")]
    environment = concat(local.pg_common, local.writable_environment, [
      { name = "PGUSER", value = var.database.master_username },
      {
        name = "PERENNIAL_DB_SERVICES"
        value = jsonencode(concat([
          for service, db in var.database.services :
          { username = db.username, database = db.database, password_env = "PERENNIAL_DB_PASSWORD_${upper(service)}" }
        ], [local.mlflow_auth_database]))
      },
      # Then MLflow's basic-auth users, in MLflow's auth database as the mlflow_server user.
      { name = "PERENNIAL_MLFLOW_AUTH_DB", value = jsonencode(local.mlflow_auth_database) },
      {
        name = "PERENNIAL_MLFLOW_USERS"
        value = jsonencode([
          for user in values(var.mlflow_users) :
          { username = user.username, admin = user.admin, permission = user.permission, password_env = user.password_env }
        ])
      },
    ])
    secrets = concat(
      [{ name = "PGPASSWORD", valueFrom = "${var.database.master_secret_arn}:password::" }],
      [for service, db in var.database.services : { name = "PERENNIAL_DB_PASSWORD_${upper(service)}", valueFrom = "${db.secret_arn}:password::" }],
      local.app_secrets["db_bootstrap"],
    )
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.ecs.name
        awslogs-region        = var.region
        awslogs-stream-prefix = "db-bootstrap"
      }
    }
  })])

  tags = merge(var.tags, { Service = "db_bootstrap" })
}
