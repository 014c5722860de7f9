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
  description = "Extra private CIDR blocks (VPN, peered VPCs) allowed to reach the internal load balancer. Never 0.0.0.0/0."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.client_cidrs : can(cidrhost(cidr, 0)) && cidr != "0.0.0.0/0"])
    error_message = "client_cidrs must be valid CIDR blocks and must not be 0.0.0.0/0."
  }
}

variable "image_tag" {
  description = "Tag of the Perennial image in the stack's ECR repository (build it from the repo and push it before applying compute)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for an internal DNS name of the load balancer. When set the listeners use HTTPS; when null they use HTTP inside the VPC."
  type        = string
  default     = null
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
