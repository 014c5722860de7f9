# One PostgreSQL instance for the Prefect server, the MLflow backend store and Optuna
# storage (one database and one user each; the master user only bootstraps them). Private, encrypted with a customer key, TLS enforced,
# automated backups, logs to CloudWatch. The master password is generated as an
# ephemeral value and handed to Secrets Manager and RDS through write-only arguments:
# it never appears in the plan, the state or this repository.

locals {
  rds_log_exports = ["postgresql", "upgrade"]
}

resource "aws_kms_key" "database" {
  description             = "${var.name_prefix} RDS storage, Performance Insights, DB secret and logs"
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
        Sid       = "CloudWatchLogsForRdsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:GenerateDataKey", "kms:DescribeKey"]
        Resource  = "*"
        Condition = {
          ArnLike = { "kms:EncryptionContext:aws:logs:arn" = "arn:${var.partition}:logs:${var.region}:${var.account_id}:log-group:/aws/rds/instance/${var.identifier}/*" }
        }
      },
    ]
  })

  tags = merge(var.tags, { Name = "${var.name_prefix}-database" })
}

resource "aws_kms_alias" "database" {
  name          = "alias/${var.name_prefix}-database"
  target_key_id = aws_kms_key.database.key_id
}

# --- master credentials -------------------------------------------------------

# Letters and digits only: the password is safe in any connection string.
ephemeral "random_password" "master" {
  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "master" {
  #checkov:skip=CKV2_AWS_57:Automatic rotation would break the Prefect and MLflow servers, which read the password once at task start. Rotate deliberately: bump db_password_version, apply, then redeploy the ECS services.
  name                    = var.secret_name
  description             = "Master credentials of ${var.identifier} (keys: username, password)"
  kms_key_id              = aws_kms_key.database.arn
  recovery_window_in_days = var.secret_recovery_window_days

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "master" {
  secret_id = aws_secretsmanager_secret.master.id
  secret_string_wo = jsonencode({
    username = var.master_username
    password = ephemeral.random_password.master.result
  })
  secret_string_wo_version = var.password_version
}

# --- one user per service -------------------------------------------------------

# The Prefect server, the MLflow server and flow runs (Optuna) each log in as their own user,
# which owns only its own database. Their passwords are made like the master password (ephemeral,
# write-only: never in plan or state) and live in one secret per service, which only that
# service's ECS execution role may read (modules/iam). Terraform cannot reach the private
# instance to create the users: the db-bootstrap ECS task (modules/compute, see infra/README.md)
# creates them, their databases and grants with the master user, and sets their passwords again
# after a rotation.
ephemeral "random_password" "service" {
  for_each = var.services

  length  = 40
  special = false
}

resource "aws_secretsmanager_secret" "service" {
  #checkov:skip=CKV2_AWS_57:Rotated deliberately with the master password (db_password_version, then the db-bootstrap task and a redeploy): the servers read it once at task start.
  for_each = var.services

  name                    = each.value.secret_name
  description             = "PostgreSQL credentials of ${each.key} on ${var.identifier} (keys: username, password, dbname)"
  kms_key_id              = aws_kms_key.database.arn
  recovery_window_in_days = var.secret_recovery_window_days

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_secretsmanager_secret_version" "service" {
  for_each = var.services

  secret_id = aws_secretsmanager_secret.service[each.key].id
  secret_string_wo = jsonencode({
    username = each.value.username
    password = ephemeral.random_password.service[each.key].result
    dbname   = each.value.database
  })
  secret_string_wo_version = var.password_version
}

# --- instance ---------------------------------------------------------------------

resource "aws_db_subnet_group" "this" {
  name        = var.identifier
  description = "Private subnets of ${var.identifier}"
  subnet_ids  = var.subnet_ids

  tags = var.tags
}

resource "aws_db_parameter_group" "this" {
  name_prefix = "${var.identifier}-pg${var.engine_version}-"
  family      = "postgres${var.engine_version}"
  description = "TLS-only connections and slow-query logging for ${var.identifier}"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_connections"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }

  tags = var.tags
}

resource "aws_cloudwatch_log_group" "rds" {
  for_each = toset(local.rds_log_exports)

  name              = "/aws/rds/instance/${var.identifier}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.database.arn

  tags = var.tags
}

# Multi-AZ, deletion protection and backup retention come from modules/settings:
# prod always has all three (a settings precondition enforces it); dev runs single-AZ
# and unprotected so it stays cheap and can be torn down.
resource "aws_db_instance" "this" {
  identifier     = var.identifier
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class

  db_name              = var.initial_db_name
  username             = var.master_username
  password_wo          = ephemeral.random_password.master.result
  password_wo_version  = var.password_version
  parameter_group_name = aws_db_parameter_group.this.name

  allocated_storage     = var.allocated_storage_gb
  max_allocated_storage = var.max_allocated_storage_gb
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.database.arn

  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [var.security_group_id]
  publicly_accessible    = false
  multi_az               = var.multi_az
  port                   = 5432

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  allow_major_version_upgrade         = false
  apply_immediately                   = !var.deletion_protection

  backup_retention_period   = var.backup_retention_days
  backup_window             = "02:00-03:00"
  maintenance_window        = "sun:03:30-sun:04:30"
  copy_tags_to_snapshot     = true
  delete_automated_backups  = !var.deletion_protection
  deletion_protection       = var.deletion_protection
  skip_final_snapshot       = !var.deletion_protection
  final_snapshot_identifier = "${var.identifier}-final"

  enabled_cloudwatch_logs_exports       = local.rds_log_exports
  monitoring_interval                   = 60
  monitoring_role_arn                   = var.monitoring_role_arn
  performance_insights_enabled          = true
  performance_insights_kms_key_id       = aws_kms_key.database.arn
  performance_insights_retention_period = 7

  tags = merge(var.tags, { Name = var.identifier })

  depends_on = [aws_cloudwatch_log_group.rds, aws_secretsmanager_secret_version.master]
}
