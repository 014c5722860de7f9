locals {
  # Key-policy actions delegated to IAM in this account. Listed explicitly instead of
  # "kms:*" so that no policy in the stack uses a wildcard action.
  kms_admin_actions = [
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:CreateGrant", "kms:Decrypt",
    "kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey", "kms:DisableKeyRotation",
    "kms:EnableKey", "kms:EnableKeyRotation", "kms:Encrypt", "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
    "kms:ListAliases", "kms:ListGrants", "kms:ListKeyPolicies", "kms:ListKeyRotations",
    "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:ReEncryptFrom", "kms:ReEncryptTo",
    "kms:RetireGrant", "kms:RevokeGrant", "kms:RotateKeyOnDemand", "kms:ScheduleKeyDeletion",
    "kms:TagResource", "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
  ]

  # Buckets encrypted with the customer key. The logs bucket (logs.tf) uses SSE-S3
  # because S3 server access logging and ALB access logs cannot write to SSE-KMS buckets.
  buckets = {
    data      = var.data_bucket_name
    artifacts = var.artifacts_bucket_name
  }

  # Prefixes of the Perennial state root (see DESIGN.md "State").
  # reports/: drift plots of the monitor; live/: traffic sampled by perennial serve.
  state_prefixes = ["landing/", "validated/", "quarantine/", "reference/", "predictions/", "reports/", "live/"]

  # Prefixes whose noncurrent versions expire, per bucket (never landing/).
  expiring_prefixes = {
    data      = [for prefix in local.state_prefixes : prefix if prefix != "landing/"]
    artifacts = ["mlflow/"]
  }
}
