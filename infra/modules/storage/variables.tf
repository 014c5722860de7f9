variable "name_prefix" {
  description = "Prefix of resource names, e.g. perennial-dev."
  type        = string
}

variable "account_id" {
  description = "AWS account id (key policy and log delivery conditions)."
  type        = string
}

variable "region" {
  description = "AWS region (log delivery conditions)."
  type        = string
}

variable "partition" {
  description = "AWS partition, e.g. aws."
  type        = string
  default     = "aws"
}

variable "data_bucket_name" {
  description = "Name of the bucket holding Perennial's state root (landing/, validated/, quarantine/, reference/, predictions/)."
  type        = string
}

variable "artifacts_bucket_name" {
  description = "Name of the bucket holding MLflow artifacts."
  type        = string
}

variable "logs_bucket_name" {
  description = "Name of the bucket receiving S3 access logs, load balancer logs and VPC flow logs."
  type        = string
}

variable "landing_to_ia_days" {
  description = "Days after which landing/ objects move to S3 Standard-IA."
  type        = number
}

variable "landing_to_glacier_days" {
  description = "Days after which landing/ objects move to S3 Glacier Instant Retrieval."
  type        = number
}

variable "noncurrent_expiry_days" {
  description = "Days after which noncurrent object versions are deleted (outside landing/, which is kept forever)."
  type        = number
}

variable "log_retention_days" {
  description = "Days access logs are kept in the logs bucket."
  type        = number
}

variable "kms_deletion_window_days" {
  description = "Waiting period before the KMS key is deleted after destroy (7-30)."
  type        = number
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
}
