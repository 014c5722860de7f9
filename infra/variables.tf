variable "region" {
  description = "AWS region to deploy to."
  type        = string
}

variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "perennial"
}

variable "environment" {
  description = "Deployment environment: dev or prod."
  type        = string
}

variable "owner" {
  description = "Team or person accountable for the stack (Owner tag)."
  type        = string
}

variable "extra_tags" {
  description = "Additional tags for every resource."
  type        = map(string)
  default     = {}
}

variable "overrides" {
  description = "Overrides of the per-environment sizes computed by modules/settings (see its overrides variable)."
  type        = any
  default     = {}
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC. Private subnets are carved out of it, one /20 per availability zone."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of /20 or larger."
  }
}

variable "client_cidrs" {
  description = "Extra private CIDR blocks (VPN, peered VPCs) allowed to reach perennial serve (:8000) on the internal load balancer. Never 0.0.0.0/0. The Prefect UI and MLflow take only members of the operators security group (output operators_security_group_id)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.client_cidrs : can(cidrhost(cidr, 0)) && cidr != "0.0.0.0/0"])
    error_message = "client_cidrs must be valid CIDR blocks and must not be 0.0.0.0/0."
  }
}

variable "image_tag" {
  description = "Tag of the Perennial image, built from infra/Dockerfile and pushed to the stack's ECR repository (immutable tags: a new build needs a new tag) before applying compute."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag)) && var.image_tag != "latest"
    error_message = "image_tag must be a valid Docker tag naming one build (a version or commit), never \"latest\"."
  }
}

variable "certificate_arn" {
  description = "ACM certificate (same account and region) for an internal DNS name of the load balancer: the listeners serve HTTPS with it. Required in prod, which serves HTTPS only; without it dev serves HTTP inside the VPC."
  type        = string
  default     = null

  validation {
    condition     = var.certificate_arn == null || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[A-Za-z0-9-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>)."
  }

  validation {
    condition     = var.environment != "prod" || var.certificate_arn != null
    error_message = "prod serves HTTPS only: set certificate_arn to an ACM certificate for the load balancer's internal DNS name."
  }
}

variable "cpu_architecture" {
  description = "CPU architecture of the Perennial image: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.cpu_architecture)
    error_message = "cpu_architecture must be X86_64 or ARM64."
  }
}

variable "postgres_engine_version" {
  description = "PostgreSQL major version for RDS (minor versions are upgraded automatically)."
  type        = string
  default     = "17"
}

variable "db_password_version" {
  description = "Increment to generate a new database password (written to Secrets Manager and RDS without ever entering the state). Restart the ECS services afterwards."
  type        = number
  default     = 1
}

variable "budget_alert_emails" {
  description = "Email addresses notified when the monthly budget is 80% spent or forecast to be exceeded."
  type        = list(string)

  validation {
    condition     = length(var.budget_alert_emails) > 0 && alltrue([for email in var.budget_alert_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email))])
    error_message = "Give at least one valid email address for budget alerts."
  }
}

variable "serve_dataset" {
  description = "Dataset whose champion perennial serve scores (configs/<dataset>.yaml in the image)."
  type        = string
  default     = "flights"

  validation {
    # The config's rule (tasks/core/config.py DATASET_NAME): no '-', which ends the dataset
    # in the model name <dataset>-<target>.
    condition     = can(regex("^[a-z0-9][a-z0-9_]{0,63}$", var.serve_dataset))
    error_message = "serve_dataset must be a dataset name (a YAML of configs/): lower-case letters, digits and '_', never a path."
  }
}

variable "serve_live_sample_rate" {
  description = "Share of scored rows perennial serve writes to live/ for the drift monitor (0 to 1)."
  type        = number
  default     = 0.1

  validation {
    condition     = var.serve_live_sample_rate >= 0 && var.serve_live_sample_rate <= 1
    error_message = "serve_live_sample_rate must be between 0 and 1."
  }
}

variable "serve_token_version" {
  description = "Increment to generate a new perennial serve bearer token (written to Secrets Manager without entering the state). Redeploy the serve service afterwards."
  type        = number
  default     = 1
}

variable "app_secret_versions" {
  description = "Version of each application credential (keys of modules/settings app_secrets, e.g. mlflow_serve): increment one to generate it again, without it entering the state. Then follow infra/README.md (rotation)."
  type        = map(number)
  default     = {}
}
