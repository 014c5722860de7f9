# Customer-managed key for the data and artifacts buckets. Principals in the account
# get access only through IAM policies that name this key (see modules/iam).

resource "aws_kms_key" "s3" {
  description             = "${var.name_prefix} S3 data and artifacts"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = var.kms_deletion_window_days
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministersKeyThroughIam"
      Effect    = "Allow"
      Principal = { AWS = "arn:${var.partition}:iam::${var.account_id}:root" }
      Action    = local.kms_admin_actions
      Resource  = "*"
    }]
  })

  tags = merge(var.tags, { Name = "${var.name_prefix}-s3" })
}

resource "aws_kms_alias" "s3" {
  name          = "alias/${var.name_prefix}-s3"
  target_key_id = aws_kms_key.s3.key_id
}
