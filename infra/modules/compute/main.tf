# ECS Fargate: Prefect server, MLflow server and perennial serve behind an internal load
# balancer, and a Prefect ECS worker that starts flow runs as tasks in the same cluster.
# All three, the flow runs and the db-bootstrap task run the Perennial image built from
# infra/Dockerfile (prefect, prefect-aws, mlflow, psycopg) and pushed to the stack's ECR
# repository, so no task needs internet access.

locals {
  image = "${aws_ecr_repository.this.repository_url}:${var.image_tag}"
  # https_only (prod) makes the listeners HTTPS whatever happens: their preconditions then
  # refuse a missing certificate instead of falling back to HTTP.
  use_tls           = var.https_only || var.certificate_arn != null
  listener_protocol = local.use_tls ? "HTTPS" : "HTTP"
  scheme            = local.use_tls ? "https" : "http"
  ports = {
    prefect = 4200
    mlflow  = 5000
    serve   = 8000
  }
  prefect_api_url = "${local.scheme}://${aws_lb.this.dns_name}:${local.ports.prefect}/api"
  # The Prefect UI's origin: the only one allowed cross-origin calls to its API.
  prefect_ui_origin = "${local.scheme}://${aws_lb.this.dns_name}:${local.ports.prefect}"
  mlflow_url        = "${local.scheme}://${aws_lb.this.dns_name}:${local.ports.mlflow}"
  serve_url         = "${local.scheme}://${aws_lb.this.dns_name}:${local.ports.serve}"

  # libpq (psycopg) and asyncpg read these, so no URL carries a password. Each service logs in
  # as its own user with its own secret (modules/database); the master user only bootstraps.
  pg_common = [
    { name = "PGHOST", value = var.database.host },
    { name = "PGPORT", value = tostring(var.database.port) },
    { name = "PGSSLMODE", value = "require" },
  ]
  pg_environment = {
    for service, db in var.database.services :
    service => concat(local.pg_common, [{ name = "PGUSER", value = db.username }])
  }
  pg_secrets = {
    for service, db in var.database.services :
    service => [{ name = "PGPASSWORD", valueFrom = "${db.secret_arn}:password::" }]
  }
  pg_url = { for service, db in var.database.services : service => "${db.username}@${var.database.host}:${var.database.port}/${db.database}" }

  # Each task family's application secrets (modules/settings secret_environment) as ECS container
  # secrets, injected by the ECS agent with the family's execution role: never plain environment.
  app_secrets = {
    for family, variables in var.secret_environment : family => [
      for name, source in variables : {
        name      = name
        valueFrom = source.key == null ? var.app_secret_arns[source.secret] : "${var.app_secret_arns[source.secret]}:${source.key}::"
      }
    ]
  }

  # MLflow's basic-auth users live in their own database of the mlflow_server user (db-bootstrap
  # creates it). The config file holds no secret: libpq takes host, user, password (PGPASSWORD,
  # from the mlflow secret) and TLS from the PG* variables, and the admin comes from
  # MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD. The container writes it to its scratch volume at start.
  mlflow_auth_database = {
    username     = var.database.services.mlflow.username
    database     = var.names.mlflow_auth_db_name
    password_env = "PERENNIAL_DB_PASSWORD_MLFLOW"
  }
  mlflow_auth_config_path = "/scratch/mlflow-auth.ini"
  mlflow_auth_config      = <<-INI
    [mlflow]
    default_permission = NO_PERMISSIONS
    database_uri = postgresql:///${var.names.mlflow_auth_db_name}
    authorization_function = mlflow.server.auth:authenticate_request_basic_auth
    auth_cache_ttl_seconds = 60
  INI

  # Read-only root filesystems: the only writable path is a per-task scratch volume.
  scratch_volume = "scratch"
  writable_environment = [
    { name = "HOME", value = "/scratch" },
    { name = "TMPDIR", value = "/scratch" },
    { name = "PREFECT_HOME", value = "/scratch/.prefect" },
  ]
  common_container = {
    image                  = local.image
    essential              = true
    readonlyRootFilesystem = true
    privileged             = false
    mountPoints            = [{ sourceVolume = local.scratch_volume, containerPath = "/scratch", readOnly = false }]
  }
}

# --- encryption key for logs and the image repository ---------------------------------

resource "aws_kms_key" "compute" {
  description             = "${var.name_prefix} ECS logs and ECR images"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministersKeyThroughIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${var.partition}:iam::${var.account_id}:root" }
        Action    = local.kms_admin_actions
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsForEcsLogGroup"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          ArnEquals = { "kms:EncryptionContext:aws:logs:arn" = "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:${var.names.log_group}" }
        }
      },
    ]
  })

  tags = merge(var.tags, { Name = "${var.name_prefix}-compute" })
}

resource "aws_kms_alias" "compute" {
  name          = "alias/${var.name_prefix}-compute"
  target_key_id = aws_kms_key.compute.key_id
}

resource "aws_cloudwatch_log_group" "ecs" {
  name              = var.names.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.compute.arn

  tags = var.tags
}

# --- image repository ---------------------------------------------------------------

resource "aws_ecr_repository" "this" {
  name                 = var.names.ecr_repository
  image_tag_mutability = "IMMUTABLE"
  force_delete         = false

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.compute.arn
  }

  tags = var.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  repository = aws_ecr_repository.this.name
  policy = jsonencode({
    rules = [
      {
        rulePriority = 1
        description  = "Expire untagged images after 14 days"
        selection    = { tagStatus = "untagged", countType = "sinceImagePushed", countUnit = "days", countNumber = 14 }
        action       = { type = "expire" }
      },
      {
        rulePriority = 2
        description  = "Keep the 50 most recent images"
        selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
        action       = { type = "expire" }
      },
    ]
  })
}

# --- cluster ---------------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = var.names.cluster

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
    base              = 0
  }
}
