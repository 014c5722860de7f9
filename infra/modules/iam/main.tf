# One role per service, each with an inline policy scoped to named resources. No task role reads
# a secret: the ECS agent injects them, with the execution role of the task's family.
# No wildcard actions. Resource "*" appears only for the read-only or
# registration calls AWS cannot scope (ecr:GetAuthorizationToken, ec2:Describe*,
# ecs:RegisterTaskDefinition family), each noted where used.

locals {
  arn_prefix = {
    ecs  = "arn:${var.partition}:ecs:${var.region}:${var.account_id}"
    logs = "arn:${var.partition}:logs:${var.region}:${var.account_id}"
    ecr  = "arn:${var.partition}:ecr:${var.region}:${var.account_id}"
  }
  cluster_arn            = "${local.arn_prefix.ecs}:cluster/${var.names.cluster}"
  log_group_arn          = "${local.arn_prefix.logs}:log-group:${var.names.log_group}"
  ecr_repository_arn     = "${local.arn_prefix.ecr}:repository/${var.names.ecr_repository}"
  landing_prefix         = "landing/"
  mutable_state_prefixes = [for prefix in var.state_prefixes : prefix if prefix != local.landing_prefix]

  ecs_task_roles = {
    prefect_server = var.names.role_prefect
    mlflow         = var.names.role_mlflow
    worker         = var.names.role_worker
    flow_run       = var.names.role_flow_run
    serve          = var.names.role_serve
  }

  # One execution role per task family: the ECS agent injects a task's secrets with it, so each
  # may read only the secrets of its own service. Only db_bootstrap reads the master secret. The
  # worker registers flow-run task definitions and can pass only the flow_run role, which
  # reads only the flow-run secrets.
  database_secrets = {
    prefect_server = [var.db_service_secret_arns["prefect_server"]]
    mlflow         = [var.db_service_secret_arns["mlflow"]]
    worker         = []
    flow_run       = [var.db_service_secret_arns["flow_run"]]
    serve          = [var.serve_token_secret_arn] # its bearer token; no database
    db_bootstrap   = concat([var.db_master_secret_arn], values(var.db_service_secret_arns))
  }
  # ...plus the application secrets of its family (modules/settings secret_access).
  execution_secrets = {
    for family, arns in local.database_secrets :
    family => concat(arns, [for secret in lookup(var.app_secret_access, family, []) : var.app_secret_arns[secret]])
  }
}

# --- trust policies -------------------------------------------------------------

data "aws_iam_policy_document" "ecs_tasks_trust" {
  statement {
    sid     = "EcsTasksOfThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }

    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["${local.arn_prefix.ecs}:*"]
    }
  }
}

data "aws_iam_policy_document" "rds_monitoring_trust" {
  statement {
    sid     = "RdsEnhancedMonitoring"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["monitoring.rds.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

# --- roles ----------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  for_each = local.execution_secrets

  name                 = "${var.names.role_execution}-${replace(each.key, "_", "-")}"
  description          = "ECS agent for ${replace(each.key, "_", " ")} tasks: pull the image, write logs, inject only this service's secrets"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_iam_role" "task" {
  for_each = local.ecs_task_roles

  name                 = each.value
  description          = "Task role of the ${replace(each.key, "_", " ")} containers"
  assume_role_policy   = data.aws_iam_policy_document.ecs_tasks_trust.json
  max_session_duration = 3600

  tags = merge(var.tags, { Service = each.key })
}

resource "aws_iam_role" "rds_monitoring" {
  name               = var.names.role_rds_monitor
  description        = "RDS enhanced monitoring publishes OS metrics to CloudWatch Logs"
  assume_role_policy = data.aws_iam_policy_document.rds_monitoring_trust.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${var.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# --- ECS execution roles ---------------------------------------------------------

data "aws_iam_policy_document" "execution" {
  for_each = local.execution_secrets

  statement {
    sid = "EcrAuthorizationTokenIsNotResourceScoped"
    # GetAuthorizationToken supports no resource-level permission: "*" is required.
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }

  statement {
    sid       = "PullPerennialImage"
    actions   = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
    resources = [local.ecr_repository_arn]
  }

  statement {
    sid       = "WriteContainerLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.log_group_arn}:log-stream:*"]
  }

  dynamic "statement" {
    for_each = length(each.value) > 0 ? [each.value] : []

    content {
      sid       = "ReadOwnSecrets"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = statement.value
    }
  }

  dynamic "statement" {
    for_each = length(each.value) > 0 ? [var.db_kms_key_arn] : []

    # Every secret of the stack is encrypted with the database module's key.
    content {
      sid       = "DecryptOwnSecrets"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]

      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${var.region}.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.execution_secrets

  name   = "ecs-execution"
  role   = aws_iam_role.execution[each.key].id
  policy = data.aws_iam_policy_document.execution[each.key].json
}

# --- MLflow server: artifacts under one prefix of the artifacts bucket ------------

data "aws_iam_policy_document" "mlflow" {
  statement {
    sid       = "ListArtifacts"
    actions   = ["s3:ListBucket"]
    resources = [var.artifacts_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.mlflow_artifacts_prefix, "${var.mlflow_artifacts_prefix}*"]
    }
  }

  statement {
    sid       = "ReadWriteArtifacts"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = ["${var.artifacts_bucket_arn}/${var.mlflow_artifacts_prefix}*"]
  }

  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.s3_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "mlflow" {
  name   = "mlflow-artifacts"
  role   = aws_iam_role.task["mlflow"].id
  policy = data.aws_iam_policy_document.mlflow.json
}

# --- Prefect ECS worker: start and watch flow-run tasks in this cluster -------------

data "aws_iam_policy_document" "worker" {
  statement {
    sid = "TaskDefinitionsAreNotResourceScoped"
    # Register/Describe/Deregister/ListTaskDefinitions accept no resource ARN.
    actions = [
      "ecs:DeregisterTaskDefinition",
      "ecs:DescribeTaskDefinition",
      "ecs:ListTaskDefinitions",
      "ecs:RegisterTaskDefinition",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "RunFlowRunTasksInThisCluster"
    actions   = ["ecs:RunTask"]
    resources = ["${local.arn_prefix.ecs}:task-definition/${var.names.flow_run_family}*"]

    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "WatchAndStopFlowRunTasks"
    actions   = ["ecs:DescribeTasks", "ecs:StopTask", "ecs:TagResource"]
    resources = ["${local.arn_prefix.ecs}:task/${var.names.cluster}/*"]
  }

  statement {
    sid       = "DescribeCluster"
    actions   = ["ecs:DescribeClusters"]
    resources = [local.cluster_arn]
  }

  statement {
    sid       = "PassFlowRunRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task["flow_run"].arn, aws_iam_role.execution["flow_run"].arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid = "ResolveNetworkConfiguration"
    # The worker checks the work pool's VPC and subnets; EC2 Describe calls accept no resource ARN.
    actions   = ["ec2:DescribeSubnets", "ec2:DescribeVpcs"]
    resources = ["*"]
  }

  statement {
    sid       = "StreamFlowRunLogs"
    actions   = ["logs:GetLogEvents"]
    resources = ["${local.log_group_arn}:log-stream:*"]
  }
}

resource "aws_iam_role_policy" "worker" {
  name   = "prefect-ecs-worker"
  role   = aws_iam_role.task["worker"].id
  policy = data.aws_iam_policy_document.worker.json
}

# --- flow runs: Perennial's state root, landing/ write-once --------------------------

data "aws_iam_policy_document" "flow_run" {
  statement {
    sid       = "ListStateRoot"
    actions   = ["s3:ListBucket"]
    resources = [var.data_bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = flatten([for prefix in var.state_prefixes : [prefix, "${prefix}*"]])
    }
  }

  statement {
    sid       = "LandingIsWriteOnce"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.data_bucket_arn}/${local.landing_prefix}*"]
  }

  statement {
    sid       = "ReadWriteDerivedState"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [for prefix in local.mutable_state_prefixes : "${var.data_bucket_arn}/${prefix}*"]
  }

  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.s3_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "flow_run" {
  name   = "perennial-state-root"
  role   = aws_iam_role.task["flow_run"].id
  policy = data.aws_iam_policy_document.flow_run.json
}

# --- perennial serve: append sampled live traffic, nothing else -----------------------------

# Models come from the MLflow server (artifacts proxied by it), so the service needs no read
# access to any bucket: it only writes new parts under live/ of the state root.
data "aws_iam_policy_document" "serve" {
  statement {
    sid       = "WriteLiveTraffic"
    actions   = ["s3:PutObject"]
    resources = ["${var.data_bucket_arn}/${var.live_prefix}*"]
  }

  statement {
    sid       = "UseBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"] # Decrypt: multipart uploads of large parts
    resources = [var.s3_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${var.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role_policy" "serve" {
  name   = "perennial-live-traffic"
  role   = aws_iam_role.task["serve"].id
  policy = data.aws_iam_policy_document.serve.json
}

# The Prefect server task role has no policy: the server talks only to PostgreSQL.
