# The bearer token of perennial serve (PERENNIAL_SERVE_TOKEN). Generated as an ephemeral value
# and handed to Secrets Manager through a write-only argument, like the database passwords: it
# never appears in the plan, the state or this repository. Only the serve execution role may
# read it (modules/iam), and the ECS agent injects it into the container as a secret. Clients
# read it from the secret too. Rotate: bump serve_token_version, apply, redeploy the service.

ephemeral "random_password" "serve_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "serve_token" {
  #checkov:skip=CKV2_AWS_57:Rotated deliberately (serve_token_version, then a redeploy): the service reads the token once at task start.
  name                    = local.names.serve_token_secret
  description             = "Bearer token of perennial serve (${var.serve_dataset})"
  kms_key_id              = module.database.kms_key_arn # the stack's secrets key
  recovery_window_in_days = local.sizing.secret_recovery_window

  tags = merge(local.tags, { Service = "serve" })
}

resource "aws_secretsmanager_secret_version" "serve_token" {
  secret_id                = aws_secretsmanager_secret.serve_token.id
  secret_string_wo         = ephemeral.random_password.serve_token.result
  secret_string_wo_version = var.serve_token_version
}
