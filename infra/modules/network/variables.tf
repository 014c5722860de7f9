variable "name_prefix" {
  description = "Prefix of resource names, e.g. perennial-dev."
  type        = string
}

variable "region" {
  description = "AWS region, used for VPC endpoint service names."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
}

variable "az_count" {
  description = "Number of availability zones, one private subnet in each (at least 2)."
  type        = number

  validation {
    condition     = var.az_count >= 2 && var.az_count <= 6
    error_message = "az_count must be between 2 and 6."
  }
}

variable "availability_zone_suffixes" {
  description = "Zone letters the stack may use (<region><letter>); the first az_count available ones are used."
  type        = list(string)
  default     = ["a", "b", "c"]
}

variable "endpoint_az_count" {
  description = "Number of availability zones that get interface VPC endpoint ENIs (each costs about 7 USD a month per endpoint)."
  type        = number
}

variable "interface_endpoints" {
  description = "AWS services reached through interface VPC endpoints, since the subnets have no internet route."
  type        = list(string)
  default     = ["ecr.api", "ecr.dkr", "logs", "secretsmanager", "ecs", "ec2"]
}

variable "client_cidrs" {
  description = "Extra private CIDR blocks allowed to reach perennial serve (:8000) on the internal load balancer (the VPC itself always is). Prefect and MLflow take the operators security group instead."
  type        = list(string)
  default     = []
}

variable "flow_logs_bucket_arn" {
  description = "ARN of the S3 bucket receiving VPC flow logs."
  type        = string
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
}
