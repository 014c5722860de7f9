variable "name_prefix" {
  description = "Prefix of resource names, e.g. perennial-dev."
  type        = string
}

variable "names" {
  description = "Resource names from modules/settings."
  type = object({
    cluster             = string
    ecr_repository      = string
    log_group           = string
    alb                 = string
    tg_prefect          = string
    tg_mlflow           = string
    tg_serve            = string
    work_pool           = string
    flow_run_family     = string
    db_bootstrap        = string
    prefect_db_name     = string
    mlflow_db_name      = string
    mlflow_auth_db_name = string
    optuna_db_name      = string
  })
}

variable "account_id" {
  description = "AWS account id (key policy)."
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

variable "vpc_id" {
  description = "VPC of the load balancer target groups."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the load balancer and the tasks."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups by role (alb, app, runner, serve) from modules/network."
  type = object({
    alb    = string
    app    = string
    runner = string
    serve  = string
  })
}

variable "image_tag" {
  description = "Tag of the Perennial image (built from infra/Dockerfile) in the ECR repository, whose tags are immutable."
  type        = string
}

variable "cpu_architecture" {
  description = "CPU architecture of the image: X86_64 or ARM64."
  type        = string
}

variable "task_sizes" {
  description = "Fargate CPU units and memory (MiB) per service."
  type = object({
    prefect_server = object({ cpu = number, memory = number })
    mlflow         = object({ cpu = number, memory = number })
    worker         = object({ cpu = number, memory = number })
    serve          = object({ cpu = number, memory = number })
  })
}

variable "execution_role_arns" {
  description = "ECS task execution role by task family (prefect_server, mlflow, worker, flow_run, db_bootstrap): each reads only its own database secret."
  type        = map(string)
}

variable "task_role_arns" {
  description = "Task role ARNs by service (prefect_server, mlflow, worker, serve)."
  type        = map(string)
}

variable "database" {
  description = "PostgreSQL connection facts. Each service in `services` logs in as its own user, its password from its secret (key \"password\") as PGPASSWORD; the master user and secret serve the db-bootstrap task only."
  type = object({
    host              = string
    port              = number
    master_username   = string
    master_secret_arn = string
    services = map(object({
      username   = string
      database   = string
      secret_arn = string
    }))
  })

  validation {
    condition     = toset(keys(var.database.services)) == toset(["prefect_server", "mlflow", "flow_run"])
    error_message = "database.services must have exactly prefect_server, mlflow and flow_run."
  }

  validation {
    condition     = !contains([for db in values(var.database.services) : db.username], var.database.master_username)
    error_message = "No service may log in as the master user."
  }
}

variable "artifacts_bucket" {
  description = "Bucket where the MLflow server stores artifacts (under mlflow/)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate (same account and region) for the HTTPS listeners; null keeps HTTP inside the VPC, which https_only refuses."
  type        = string
  default     = null
}

variable "https_only" {
  description = "Serve HTTPS only (prod): the listeners refuse to exist without certificate_arn."
  type        = bool
}

variable "alb_logs_bucket" {
  description = "Bucket receiving the load balancer access logs (prefix alb/)."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the load balancer from deletion."
  type        = bool
}

variable "log_retention_days" {
  description = "Retention of the ECS container logs."
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

variable "serve" {
  description = "perennial serve: the dataset it serves (configs/<dataset>.yaml in the image), the state root it writes sampled live traffic to, the bucket's KMS key, the share of rows sampled, and the Secrets Manager ARN of its bearer token."
  type = object({
    dataset          = string
    data_bucket      = string
    s3_kms_key_arn   = string
    live_sample_rate = number
    token_secret_arn = string
  })

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_]{0,63}$", var.serve.dataset))
    error_message = "serve.dataset must be a dataset name (a YAML of configs/, tasks/core/config.py DATASET_NAME), never a path."
  }

  validation {
    condition     = var.serve.live_sample_rate >= 0 && var.serve.live_sample_rate <= 1
    error_message = "serve.live_sample_rate must be between 0 and 1."
  }
}

variable "app_secret_arns" {
  description = "ARN of each application secret (modules/settings app_secrets), by key."
  type        = map(string)
}

variable "secret_environment" {
  description = "Application secrets of each task family, by environment variable: {secret, key} (modules/settings secret_environment; key is a JSON key, or null for the whole secret)."
  type        = map(map(object({ secret = string, key = string })))

  validation {
    condition     = alltrue([for family in ["prefect_server", "mlflow", "worker", "flow_run", "serve", "db_bootstrap"] : contains(keys(var.secret_environment), family)])
    error_message = "secret_environment needs every task family: prefect_server, mlflow, worker, flow_run, serve, db_bootstrap."
  }
}

variable "mlflow_users" {
  description = "MLflow basic-auth users by role (modules/settings mlflow_users), which the db-bootstrap task creates: username, admin flag, permission on every experiment and registered model, and the variable holding the password."
  type = map(object({
    username     = string
    secret       = string
    admin        = bool
    permission   = string
    password_env = string
  }))
}
