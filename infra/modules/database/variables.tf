variable "name_prefix" {
  description = "Prefix of resource names, e.g. perennial-dev."
  type        = string
}

variable "identifier" {
  description = "RDS instance identifier."
  type        = string
}

variable "account_id" {
  description = "AWS account id (key policy)."
  type        = string
}

variable "region" {
  description = "AWS region (key policy for CloudWatch Logs)."
  type        = string
}

variable "partition" {
  description = "AWS partition, e.g. aws."
  type        = string
  default     = "aws"
}

variable "subnet_ids" {
  description = "Private subnets of the DB subnet group (at least two availability zones)."
  type        = list(string)
}

variable "security_group_id" {
  description = "Security group of the database (ingress from the ECS tasks only)."
  type        = string
}

variable "engine_version" {
  description = "PostgreSQL major version."
  type        = string
}

variable "instance_class" {
  description = "RDS instance class."
  type        = string
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage in GB."
  type        = number
}

variable "max_allocated_storage_gb" {
  description = "Upper limit for storage autoscaling in GB."
  type        = number
}

variable "multi_az" {
  description = "Run a synchronous standby in a second availability zone."
  type        = bool
}

variable "backup_retention_days" {
  description = "Days automated backups are kept (1-35)."
  type        = number
}

variable "deletion_protection" {
  description = "Protect the instance from deletion, and take a final snapshot on destroy."
  type        = bool
}

variable "master_username" {
  description = "Master user name; the password is generated and stored in Secrets Manager."
  type        = string
}

variable "initial_db_name" {
  description = "Database created with the instance (the others are created by the ECS db-init container)."
  type        = string
}

variable "services" {
  description = "Services with their own PostgreSQL user: username, database it owns, Secrets Manager secret name (from modules/settings db_services)."
  type = map(object({
    username    = string
    database    = string
    secret_name = string
  }))
}

variable "password_version" {
  description = "Bump to rotate the master and service passwords (new random values written to Secrets Manager and RDS; rerun the db-bootstrap task for the service users)."
  type        = number
}

variable "secret_name" {
  description = "Name of the Secrets Manager secret holding {username, password}."
  type        = string
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can be restored (0 or 7-30)."
  type        = number
}

variable "monitoring_role_arn" {
  description = "IAM role RDS enhanced monitoring uses to publish metrics."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the PostgreSQL logs exported to CloudWatch."
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
