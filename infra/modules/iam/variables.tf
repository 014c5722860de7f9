variable "names" {
  description = "Resource names from modules/settings (roles, cluster, log group, ECR repository, flow-run family)."
  type = object({
    role_execution   = string
    role_prefect     = string
    role_mlflow      = string
    role_worker      = string
    role_flow_run    = string
    role_serve       = string
    role_rds_monitor = string
    cluster          = string
    log_group        = string
    ecr_repository   = string
    flow_run_family  = string
  })
}

variable "account_id" {
  description = "AWS account id."
  type        = string
}

variable "region" {
  description = "AWS region."
  type        = string
}

variable "partition" {
  description = "AWS partition, e.g. aws."
  type        = string
  default     = "aws"
}

variable "data_bucket_arn" {
  description = "ARN of the data bucket (Perennial's state root)."
  type        = string
}

variable "state_prefixes" {
  description = "Prefixes of the state root flow runs may use; landing/ is write-once (no delete)."
  type        = list(string)
}

variable "artifacts_bucket_arn" {
  description = "ARN of the MLflow artifacts bucket."
  type        = string
}

variable "mlflow_artifacts_prefix" {
  description = "Prefix under which the MLflow server stores artifacts."
  type        = string
  default     = "mlflow/"
}

variable "s3_kms_key_arn" {
  description = "ARN of the KMS key of the data and artifacts buckets."
  type        = string
}

variable "db_master_secret_arn" {
  description = "ARN of the database master secret: readable by the db_bootstrap execution role only."
  type        = string
}

variable "db_service_secret_arns" {
  description = "ARN of each service's own database secret (prefect_server, mlflow, flow_run), injected as PGPASSWORD by the ECS agent."
  type        = map(string)

  validation {
    condition     = toset(keys(var.db_service_secret_arns)) == toset(["prefect_server", "mlflow", "flow_run"])
    error_message = "db_service_secret_arns must have exactly prefect_server, mlflow and flow_run."
  }
}

variable "db_kms_key_arn" {
  description = "ARN of the KMS key encrypting the database secret."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
}

variable "serve_token_secret_arn" {
  description = "ARN of the perennial serve bearer-token secret: readable by the serve execution role only."
  type        = string
}

variable "live_prefix" {
  description = "Prefix of the state root where perennial serve writes sampled live traffic."
  type        = string
  default     = "live/"
}

variable "app_secret_arns" {
  description = "ARN of each application secret (modules/settings app_secrets), by key."
  type        = map(string)
}

variable "app_secret_access" {
  description = "Application secrets each task family's execution role may read (modules/settings secret_access): family => secret keys."
  type        = map(list(string))

  validation {
    condition     = alltrue([for family in keys(var.app_secret_access) : contains(keys(local.database_secrets), family)])
    error_message = "app_secret_access names a task family without an execution role (see local.database_secrets)."
  }
}
