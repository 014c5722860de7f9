# Data bucket (Perennial's state root) and MLflow artifacts bucket: versioned,
# SSE-KMS with the customer key, no public access, TLS only, access-logged.

resource "aws_s3_bucket" "this" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles storage cost; durability comes from S3 (redundant across zones) plus versioning. Add replication where a DR policy must survive the loss of a region.
  for_each = local.buckets

  bucket        = each.value
  force_destroy = false

  tags = merge(var.tags, { Name = each.value, Purpose = each.key })
}

resource "aws_s3_bucket_ownership_controls" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  for_each = aws_s3_bucket.this

  bucket                  = each.value.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.s3.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_logging" "this" {
  for_each = aws_s3_bucket.this

  bucket        = each.value.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3-access/${each.value.id}/"
}

# EventBridge notifications: a landing/ object can trigger ingestion without polling.
resource "aws_s3_bucket_notification" "this" {
  for_each = aws_s3_bucket.this

  bucket      = each.value.id
  eventbridge = true
}

# landing/ is write-once on the bucket side too, whoever writes (the flow-run role has no
# delete there; see modules/iam). A put or a multipart completion into landing/ is denied
# unless it carries `If-None-Match: *`, so S3 itself refuses to replace an existing key (412)
# and the bytes under a landed key never change. Object Lock was the alternative and is not
# used: it keeps old versions from deletion but still lets a put make a new current version of
# the same key (readers would see new bytes), and in compliance mode nobody, root included, can
# ever remove a batch landed by mistake or under a data-deletion request. CreateMultipartUpload,
# UploadPart and UploadPartCopy take no conditional header: s3:ObjectCreationOperation exempts
# them. CopyObject into landing/ is refused (S3 cannot copy conditionally); Perennial never does it.
locals {
  landing_write_once = {
    Sid       = "LandingIsWriteOnce"
    Effect    = "Deny"
    Principal = { AWS = "*" }
    Action    = "s3:PutObject"
    Resource  = "${aws_s3_bucket.this["data"].arn}/landing/*"
    Condition = {
      "Null" = { "s3:if-none-match" = "true" }
      Bool   = { "s3:ObjectCreationOperation" = "true" }
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(each.key == "data" ? [local.landing_write_once] : [], [
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = { AWS = "*" }
        Action    = "s3:*"
        Resource  = [each.value.arn, "${each.value.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
      {
        Sid       = "DenyOutdatedTls"
        Effect    = "Deny"
        Principal = { AWS = "*" }
        Action    = "s3:*"
        Resource  = [each.value.arn, "${each.value.arn}/*"]
        Condition = { NumericLessThan = { "s3:TlsVersion" = "1.2" } }
      },
      {
        Sid       = "DenyUploadsWithOtherEncryption"
        Effect    = "Deny"
        Principal = { AWS = "*" }
        Action    = "s3:PutObject"
        Resource  = "${each.value.arn}/*"
        Condition = {
          "Null"          = { "s3:x-amz-server-side-encryption" = "false" }
          StringNotEquals = { "s3:x-amz-server-side-encryption" = "aws:kms" }
        }
      },
    ])
  })

  depends_on = [aws_s3_bucket_public_access_block.this]
}

# Lifecycle. In the data bucket landing/ is raw data, immutable and never deleted: it
# only moves to cheaper storage classes. Everything else can be rebuilt from landing/,
# so old versions expire.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  for_each = aws_s3_bucket.this

  bucket = each.value.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  dynamic "rule" {
    for_each = each.key == "data" ? ["landing/"] : []

    content {
      id     = "landing-to-cheaper-storage"
      status = "Enabled"

      filter {
        prefix = rule.value
      }

      transition {
        days          = var.landing_to_ia_days
        storage_class = "STANDARD_IA"
      }

      transition {
        days          = var.landing_to_glacier_days
        storage_class = "GLACIER_IR"
      }

      noncurrent_version_transition {
        noncurrent_days = var.landing_to_ia_days
        storage_class   = "STANDARD_IA"
      }

    }
  }

  dynamic "rule" {
    for_each = local.expiring_prefixes[each.key]

    content {
      id     = "expire-old-versions-${trimsuffix(rule.value, "/")}"
      status = "Enabled"

      filter {
        prefix = rule.value
      }

      noncurrent_version_expiration {
        noncurrent_days = var.noncurrent_expiry_days
      }

    }
  }
}
