# terraform plan -var-file=envs/dev.tfvars
# Sizes, retention and protection come from modules/settings for environment = "dev";
# override single fields with `overrides = { ... }`.

region      = "eu-west-1"
environment = "dev"
owner       = "ml-platform"
image_tag   = "0.1.0"

vpc_cidr     = "10.40.0.0/16"
client_cidrs = []

budget_alert_emails = ["ml-platform-alerts@example.com"]

extra_tags = {
  CostCenter = "ml-dev"
}
