variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "perennial"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}[a-z0-9]$", var.project))
    error_message = "project must be 3-16 characters of lowercase letters, digits and hyphens, starting with a letter."
  }
}

variable "environment" {
  description = "Deployment environment: dev or prod. Selects sizing, retention and protection settings."
  type        = string

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "environment must be \"dev\" or \"prod\"."
  }
}

variable "account_id" {
  description = "AWS account id, used to make S3 bucket names globally unique."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be a 12-digit AWS account id."
  }
}

variable "region" {
  description = "AWS region the stack is deployed to (e.g. eu-west-1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. eu-west-1."
  }
}

variable "owner" {
  description = "Team or person accountable for the stack; becomes the Owner tag."
  type        = string

  validation {
    condition     = length(trimspace(var.owner)) > 0
    error_message = "owner must not be empty."
  }
}

variable "extra_tags" {
  description = "Additional tags applied to every resource. Cannot override the standard tags."
  type        = map(string)
  default     = {}
}

variable "overrides" {
  description = "Per-deployment overrides of the environment defaults (sizes, retention, budget). Unset fields keep the defaults."
  type = object({
    az_count                 = optional(number)
    endpoint_az_count        = optional(number)
    db_instance_class        = optional(string)
    db_allocated_storage_gb  = optional(number)
    db_max_allocated_storage = optional(number)
    db_multi_az              = optional(bool)
    db_backup_retention_days = optional(number)
    log_retention_days       = optional(number)
    landing_to_ia_days       = optional(number)
    landing_to_glacier_days  = optional(number)
    noncurrent_expiry_days   = optional(number)
    monthly_budget_usd       = optional(number)
    prefect_server_cpu       = optional(number)
    prefect_server_memory    = optional(number)
    mlflow_cpu               = optional(number)
    mlflow_memory            = optional(number)
    worker_cpu               = optional(number)
    worker_memory            = optional(number)
    serve_cpu                = optional(number)
    serve_memory             = optional(number)
    flow_run_cpu             = optional(number)
    flow_run_memory          = optional(number)
    deletion_protection      = optional(bool)
    https_only               = optional(bool)
    kms_deletion_window_days = optional(number)
    secret_recovery_window   = optional(number)
  })
  default = {}
}
