output "data_bucket" {
  description = "Name of the data bucket (Perennial's state root)."
  value       = aws_s3_bucket.this["data"].id
}

output "data_bucket_arn" {
  description = "ARN of the data bucket."
  value       = aws_s3_bucket.this["data"].arn
}

output "artifacts_bucket" {
  description = "Name of the MLflow artifacts bucket."
  value       = aws_s3_bucket.this["artifacts"].id
}

output "artifacts_bucket_arn" {
  description = "ARN of the MLflow artifacts bucket."
  value       = aws_s3_bucket.this["artifacts"].arn
}

output "logs_bucket" {
  description = "Name of the log bucket (ALB access logs go under alb/)."
  value       = aws_s3_bucket.logs.id
}

output "logs_bucket_arn" {
  description = "ARN of the log bucket."
  value       = aws_s3_bucket.logs.arn
}

output "kms_key_arn" {
  description = "ARN of the customer-managed KMS key encrypting the data and artifacts buckets."
  value       = aws_kms_key.s3.arn
}

output "state_prefixes" {
  description = "Prefixes of Perennial's state root in the data bucket."
  value       = local.state_prefixes
}
