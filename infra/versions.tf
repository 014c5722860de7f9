terraform {
  # 1.11+: write-only arguments keep the database password out of plan and state.
  required_version = ">= 1.11.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.7, < 4.0"
    }
  }

  # Configure remote state per deployment, e.g. with
  #   terraform init -backend-config="bucket=<state bucket>" -backend-config="key=perennial/dev.tfstate" \
  #     -backend-config="region=eu-west-1" -backend-config="use_lockfile=true"
  backend "s3" {}
}

provider "aws" {
  region = var.region

  # Resources also carry the tags explicitly (modules are reusable on their own);
  # default_tags catches anything AWS creates on our behalf through the provider.
  default_tags {
    tags = module.settings.tags
  }
}
