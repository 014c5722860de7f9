# Provider-free module: names, tags and per-environment sizes for the Perennial stack.
# The root module feeds every other module from these outputs, and
# infra/tests/*.tftest.hcl test them without any provider.

locals {
  name_prefix = "${var.project}-${var.environment}"

  # Environment defaults. Fargate sizes must be valid CPU/memory pairs
  # (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html).
  defaults = {
    dev = {
      az_count                 = 2
      endpoint_az_count        = 1
      db_instance_class        = "db.t4g.micro"
      db_allocated_storage_gb  = 20
      db_max_allocated_storage = 50
      db_multi_az              = false
      db_backup_retention_days = 7
      log_retention_days       = 30
      landing_to_ia_days       = 30
      landing_to_glacier_days  = 90
      noncurrent_expiry_days   = 30
      monthly_budget_usd       = 200
      prefect_server_cpu       = 512
      prefect_server_memory    = 1024
      mlflow_cpu               = 512
      mlflow_memory            = 2048
      worker_cpu               = 256
      worker_memory            = 512
      serve_cpu                = 512
      serve_memory             = 1024
      flow_run_cpu             = 1024
      flow_run_memory          = 4096
      deletion_protection      = false
      https_only               = false # no certificate needed: HTTP inside the VPC is allowed
      kms_deletion_window_days = 7
      secret_recovery_window   = 7
    }
    prod = {
      az_count                 = 3
      endpoint_az_count        = 2
      db_instance_class        = "db.t4g.medium"
      db_allocated_storage_gb  = 50
      db_max_allocated_storage = 200
      db_multi_az              = true
      db_backup_retention_days = 30
      log_retention_days       = 400
      landing_to_ia_days       = 30
      landing_to_glacier_days  = 180
      noncurrent_expiry_days   = 90
      monthly_budget_usd       = 600
      prefect_server_cpu       = 1024
      prefect_server_memory    = 2048
      mlflow_cpu               = 1024
      mlflow_memory            = 2048
      worker_cpu               = 512
      worker_memory            = 1024
      serve_cpu                = 1024
      serve_memory             = 2048
      flow_run_cpu             = 2048
      flow_run_memory          = 8192
      deletion_protection      = true
      https_only               = true # the listeners refuse to exist without certificate_arn
      kms_deletion_window_days = 30
      secret_recovery_window   = 30
    }
  }

  sizing = merge(
    local.defaults[var.environment],
    { for key, value in var.overrides : key => value if value != null },
  )

  # Every name the stack uses, in one place. AWS limits: S3 buckets 63, ALB and
  # target groups 32, RDS identifiers 63, IAM roles 64 characters.
  bucket_suffix = "${var.account_id}-${var.region}"
  names = {
    prefix              = local.name_prefix
    data_bucket         = "${local.name_prefix}-data-${local.bucket_suffix}"
    artifacts_bucket    = "${local.name_prefix}-artifacts-${local.bucket_suffix}"
    logs_bucket         = "${local.name_prefix}-logs-${local.bucket_suffix}"
    db_identifier       = "${local.name_prefix}-postgres"
    db_secret           = "${var.project}/${var.environment}/postgres-master"
    cluster             = local.name_prefix
    ecr_repository      = "${var.project}/${var.environment}"
    log_group           = "/${var.project}/${var.environment}/ecs"
    alb                 = "${local.name_prefix}-internal"
    tg_prefect          = "${local.name_prefix}-prefect"
    tg_mlflow           = "${local.name_prefix}-mlflow"
    tg_serve            = "${local.name_prefix}-serve"
    work_pool           = var.environment # the deployments in infra/prefect-prod.yaml target "prod"
    budget              = "${local.name_prefix}-monthly"
    role_execution      = "${local.name_prefix}-ecs-execution"
    role_prefect        = "${local.name_prefix}-prefect-server"
    role_mlflow         = "${local.name_prefix}-mlflow-server"
    role_worker         = "${local.name_prefix}-prefect-worker"
    role_flow_run       = "${local.name_prefix}-flow-run"
    role_serve          = "${local.name_prefix}-serve"
    serve_token_secret  = "${var.project}/${var.environment}/serve-token"
    role_rds_monitor    = "${local.name_prefix}-rds-monitoring"
    flow_run_family     = "${local.name_prefix}-flow-run"
    db_bootstrap        = "${local.name_prefix}-db-bootstrap"
    prefect_db_name     = "prefect"
    mlflow_db_name      = "mlflow"
    mlflow_auth_db_name = "mlflow_auth" # MLflow's basic-auth users, owned by the mlflow_server user
    optuna_db_name      = "optuna"
    db_master_username  = "perennial"
  }

  # One PostgreSQL user per service that talks to the database, each owning its own database
  # and holding its own secret; the master user only bootstraps them (modules/compute
  # db_bootstrap task). The ECS worker uses no database.
  db_services = {
    prefect_server = { username = "prefect_server", database = local.names.prefect_db_name }
    mlflow         = { username = "mlflow_server", database = local.names.mlflow_db_name }
    flow_run       = { username = "flow_run", database = local.names.optuna_db_name } # Optuna storage
  }
  db_service_secrets = {
    for service, db in local.db_services :
    service => merge(db, { secret_name = "${var.project}/${var.environment}/postgres-${replace(service, "_", "-")}" })
  }

  # MLflow's basic-auth users (db-bootstrap creates them and sets their passwords, the MLflow
  # server checks them). Nobody has a permission by default: flow runs may edit every
  # experiment and registered model, serve may only read them, the admin manages users.
  mlflow_users = {
    admin    = { username = "perennial_admin", secret = "mlflow_admin", admin = true, permission = null, password_env = "PERENNIAL_MLFLOW_PASSWORD_ADMIN" }
    flow_run = { username = "flow_run", secret = "mlflow_flow_run", admin = false, permission = "EDIT", password_env = "PERENNIAL_MLFLOW_PASSWORD_FLOW_RUN" }
    serve    = { username = "serve", secret = "mlflow_serve", admin = false, permission = "READ", password_env = "PERENNIAL_MLFLOW_PASSWORD_SERVE" }
  }

  # The application's credentials, each an ephemeral random value written write-only to its own
  # Secrets Manager secret (infra/app_secrets.tf): a plain string, or JSON {username, password}
  # for an MLflow user.
  app_secrets = {
    prefect_api_auth   = { secret_name = "${var.project}/${var.environment}/prefect-api-auth", username = null, description = "Prefect API auth string: the server requires it, the worker and flow runs send it" }
    mlflow_admin       = { secret_name = "${var.project}/${var.environment}/mlflow-admin", username = local.mlflow_users.admin.username, description = "MLflow admin user (basic-auth): manages users and permissions" }
    mlflow_session_key = { secret_name = "${var.project}/${var.environment}/mlflow-session-key", username = null, description = "MLflow server's Flask secret key (sessions and CSRF tokens of its UI)" }
    mlflow_flow_run    = { secret_name = "${var.project}/${var.environment}/mlflow-flow-run", username = local.mlflow_users.flow_run.username, description = "MLflow user of flow runs: edits experiments and registered models" }
    mlflow_serve       = { secret_name = "${var.project}/${var.environment}/mlflow-serve", username = local.mlflow_users.serve.username, description = "MLflow user of perennial serve: reads models, changes nothing" }
    model_signing_key  = { secret_name = "${var.project}/${var.environment}/model-signing-key", username = null, description = "HMAC key of model digests: flow runs sign, perennial serve checks" }
  }

  # Who gets which secret, as which environment variable, by task family (one ECS execution role
  # each): modules/iam lets each role read exactly these secrets, modules/compute injects them as
  # ECS container secrets. `key` picks a JSON key; null takes the whole secret. The database
  # passwords (modules/database) and the serve token (infra/serve_token.tf) are apart.
  secret_environment = {
    prefect_server = {
      PREFECT_SERVER_API_AUTH_STRING = { secret = "prefect_api_auth", key = null }
    }
    mlflow = {
      MLFLOW_AUTH_ADMIN_USERNAME     = { secret = "mlflow_admin", key = "username" }
      MLFLOW_AUTH_ADMIN_PASSWORD     = { secret = "mlflow_admin", key = "password" }
      MLFLOW_FLASK_SERVER_SECRET_KEY = { secret = "mlflow_session_key", key = null }
    }
    # The ECS worker only starts flow-run tasks: it never loads a model nor talks to MLflow.
    worker = {
      PREFECT_API_AUTH_STRING = { secret = "prefect_api_auth", key = null }
    }
    flow_run = {
      PREFECT_API_AUTH_STRING     = { secret = "prefect_api_auth", key = null }
      MLFLOW_TRACKING_USERNAME    = { secret = "mlflow_flow_run", key = "username" }
      MLFLOW_TRACKING_PASSWORD    = { secret = "mlflow_flow_run", key = "password" }
      PERENNIAL_MODEL_SIGNING_KEY = { secret = "model_signing_key", key = null }
    }
    serve = {
      MLFLOW_TRACKING_USERNAME    = { secret = "mlflow_serve", key = "username" }
      MLFLOW_TRACKING_PASSWORD    = { secret = "mlflow_serve", key = "password" }
      PERENNIAL_MODEL_SIGNING_KEY = { secret = "model_signing_key", key = null }
    }
    # Creates the MLflow users, or sets their passwords again after a rotation.
    db_bootstrap = {
      PERENNIAL_MLFLOW_PASSWORD_ADMIN    = { secret = "mlflow_admin", key = "password" }
      PERENNIAL_MLFLOW_PASSWORD_FLOW_RUN = { secret = "mlflow_flow_run", key = "password" }
      PERENNIAL_MLFLOW_PASSWORD_SERVE    = { secret = "mlflow_serve", key = "password" }
    }
  }
  # The same table turned around: which families read each secret, and each family's secrets.
  secret_readers = {
    for secret in keys(local.app_secrets) : secret => sort([
      for family, variables in local.secret_environment : family
      if contains([for source in values(variables) : source.secret], secret)
    ])
  }
  secret_access = {
    for family, variables in local.secret_environment :
    family => sort(distinct([for source in values(variables) : source.secret]))
  }

  standard_tags = {
    Project     = var.project
    Environment = var.environment
    Owner       = var.owner
    Stack       = local.name_prefix
    ManagedBy   = "terraform"
  }
  # Standard tags win: extra_tags cannot relabel a resource's project or environment.
  tags = merge(var.extra_tags, local.standard_tags)

  valid_fargate_memory = {
    256  = [512, 1024, 2048]
    512  = [1024, 2048, 3072, 4096]
    1024 = [for gb in range(2, 9) : gb * 1024]
    2048 = [for gb in range(4, 17) : gb * 1024]
    4096 = [for gb in range(8, 31) : gb * 1024]
  }
  fargate_tasks = {
    prefect_server = [local.sizing.prefect_server_cpu, local.sizing.prefect_server_memory]
    mlflow         = [local.sizing.mlflow_cpu, local.sizing.mlflow_memory]
    worker         = [local.sizing.worker_cpu, local.sizing.worker_memory]
    serve          = [local.sizing.serve_cpu, local.sizing.serve_memory]
    flow_run       = [local.sizing.flow_run_cpu, local.sizing.flow_run_memory]
  }
  invalid_fargate_sizes = [
    for task, size in local.fargate_tasks : task
    if !contains(lookup(local.valid_fargate_memory, size[0], []), size[1])
  ]
}
