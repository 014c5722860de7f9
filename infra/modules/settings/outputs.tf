output "name_prefix" {
  description = "Prefix of every resource name: <project>-<environment>."
  value       = local.name_prefix
}

output "names" {
  description = "Names of the stack's resources (buckets, cluster, roles, log group, databases...)."
  value       = local.names

  precondition {
    condition = alltrue([
      for bucket in [local.names.data_bucket, local.names.artifacts_bucket, local.names.logs_bucket] :
      length(bucket) <= 63
    ])
    error_message = "An S3 bucket name would exceed 63 characters: shorten project."
  }

  precondition {
    condition     = alltrue([for name in [local.names.alb, local.names.tg_prefect, local.names.tg_mlflow] : length(name) <= 32])
    error_message = "A load balancer or target group name would exceed 32 characters: shorten project."
  }
}

output "db_services" {
  description = "Database user, database and secret name of each service that uses PostgreSQL (prefect_server, mlflow, flow_run)."
  value       = local.db_service_secrets

  precondition {
    condition = alltrue([
      for db in values(local.db_services) :
      db.username != local.names.db_master_username && can(regex("^[a-z_][a-z0-9_]{0,62}$", db.username))
    ])
    error_message = "Every service needs its own PostgreSQL user: a valid identifier that is not the master user."
  }

  precondition {
    condition     = length(distinct([for db in values(local.db_services) : db.username])) == length(local.db_services)
    error_message = "Two services would share a PostgreSQL user."
  }
}

output "tags" {
  description = "Tags applied to every resource."
  value       = local.tags
}

output "is_production" {
  description = "True for the prod environment."
  value       = var.environment == "prod"
}

output "sizing" {
  description = "Per-environment sizes, retention periods, protection flags and budget, after overrides."
  value       = local.sizing

  precondition {
    condition     = length(local.invalid_fargate_sizes) == 0
    error_message = "Invalid Fargate CPU/memory combination for: ${join(", ", local.invalid_fargate_sizes)}."
  }

  precondition {
    condition     = local.sizing.az_count >= 2 && local.sizing.endpoint_az_count >= 1 && local.sizing.endpoint_az_count <= local.sizing.az_count
    error_message = "az_count must be at least 2 (load balancer and DB subnet group) and endpoint_az_count between 1 and az_count."
  }

  precondition {
    condition     = local.sizing.landing_to_glacier_days >= local.sizing.landing_to_ia_days + 30
    error_message = "landing_to_glacier_days must be at least 30 days after landing_to_ia_days (S3 minimum storage duration)."
  }

  precondition {
    condition     = local.sizing.landing_to_ia_days >= 30
    error_message = "landing_to_ia_days must be at least 30 (S3 rejects earlier transitions to STANDARD_IA)."
  }

  precondition {
    condition     = local.sizing.db_backup_retention_days >= 1 && local.sizing.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }

  precondition {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], local.sizing.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }

  precondition {
    condition     = var.environment != "prod" || (local.sizing.deletion_protection && local.sizing.db_multi_az && local.sizing.db_backup_retention_days >= 7)
    error_message = "prod must keep deletion protection, Multi-AZ and at least 7 days of backups."
  }

  precondition {
    condition     = var.environment != "prod" || local.sizing.https_only
    error_message = "prod serves HTTPS only: https_only cannot be overridden to false."
  }
}

output "app_secrets" {
  description = "The application's credentials, by key: Secrets Manager name, description, and the MLflow username of a JSON {username, password} secret (null: a plain string)."
  value       = local.app_secrets

  precondition {
    condition     = length(distinct([for secret in values(local.app_secrets) : secret.secret_name])) == length(local.app_secrets)
    error_message = "Two application secrets would share a Secrets Manager name."
  }
}

output "mlflow_users" {
  description = "MLflow basic-auth users by role (admin, flow_run, serve): username, secret, admin flag, permission on every experiment and registered model, and the variable db-bootstrap reads its password from."
  value       = local.mlflow_users

  precondition {
    condition     = [for role, user in local.mlflow_users : role if user.admin] == ["admin"] && length(distinct([for user in values(local.mlflow_users) : user.username])) == length(local.mlflow_users)
    error_message = "Exactly one MLflow admin, and one username per MLflow user."
  }

  precondition {
    condition     = alltrue([for user in values(local.mlflow_users) : user.admin || contains(["READ", "EDIT"], user.permission)])
    error_message = "An MLflow user that is not the admin reads (READ) or edits (EDIT), never manages."
  }
}

output "secret_environment" {
  description = "Application secrets of each task family, by environment variable: {secret, key} (key: a JSON key, or null for the whole secret). Injected as ECS container secrets."
  value       = local.secret_environment

  precondition {
    condition = alltrue(flatten([
      for variables in values(local.secret_environment) : [
        for source in values(variables) :
        contains(keys(local.app_secrets), source.secret) && (
          local.app_secrets[source.secret].username == null ? source.key == null : contains(["username", "password"], source.key)
        )
      ]
    ]))
    error_message = "Every secret_environment entry names an app secret, with a JSON key (username, password) exactly when the secret is JSON."
  }

  precondition {
    condition = local.secret_environment.db_bootstrap == {
      for user in values(local.mlflow_users) : user.password_env => { secret = user.secret, key = "password" }
    }
    error_message = "db-bootstrap gets each MLflow user's password, under that user's password_env, and nothing else."
  }

  precondition {
    condition     = alltrue([for readers in values(local.secret_readers) : length(readers) > 0])
    error_message = "An application secret nobody reads should not exist."
  }
}

output "secret_readers" {
  description = "Task families reading each application secret (secret_environment turned around)."
  value       = local.secret_readers
}

output "secret_access" {
  description = "Application secrets each task family's execution role may read, from local.secret_environment."
  value       = local.secret_access
}
