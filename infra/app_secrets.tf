# The application's credentials (modules/settings app_secrets): the Prefect API auth string,
# MLflow's admin, session key and service users, and the model-signing key. Each is generated
# as an ephemeral value and handed to Secrets Manager through a write-only argument, like the
# serve token and the database passwords: never in the plan, the state or this repository.
# Each task family's execution role reads only its own (modules/iam), and the ECS agent injects
# them as container secrets (modules/compute), following settings' secret_environment.
# Rotate one: -var 'app_secret_versions={mlflow_serve=2}', apply, then as infra/README.md says.

ephemeral "random_password" "app" {
  for_each = module.settings.app_secrets

  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "app" {
  #checkov:skip=CKV2_AWS_57:Rotated deliberately (app_secret_versions, then db-bootstrap and a redeploy): the services read their credentials once at task start.
  for_each = module.settings.app_secrets

  name                    = each.value.secret_name
  description             = each.value.description
  kms_key_id              = module.database.kms_key_arn # the stack's secrets key
  recovery_window_in_days = local.sizing.secret_recovery_window

  tags = merge(local.tags, { Secret = each.key })

  lifecycle {
    precondition {
      condition     = alltrue([for name in keys(var.app_secret_versions) : contains(keys(module.settings.app_secrets), name)])
      error_message = "app_secret_versions names a secret the stack does not have: use keys of modules/settings app_secrets (${join(", ", keys(module.settings.app_secrets))})."
    }
  }
}

resource "aws_secretsmanager_secret_version" "app" {
  for_each = module.settings.app_secrets

  secret_id = aws_secretsmanager_secret.app[each.key].id
  # A plain string, or {username, password} for an MLflow user.
  secret_string_wo = each.value.username == null ? ephemeral.random_password.app[each.key].result : jsonencode({
    username = each.value.username
    password = ephemeral.random_password.app[each.key].result
  })
  secret_string_wo_version = lookup(var.app_secret_versions, each.key, 1)
}

locals {
  app_secret_arns = { for name, secret in aws_secretsmanager_secret.app : name => secret.arn }
}
