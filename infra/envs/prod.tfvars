# terraform plan -var-file=envs/prod.tfvars
# prod: Multi-AZ database, 30 days of backups, deletion protection, 400 days of logs.
# prod serves HTTPS only: certificate_arn is required (an ACM certificate of this account and
# region for the load balancer's internal DNS name). The value below is a placeholder: plan
# refuses it (wrong account) until you replace it.

region      = "eu-west-1"
environment = "prod"
owner       = "ml-platform"
image_tag   = "0.1.0"

vpc_cidr     = "10.41.0.0/16"
client_cidrs = [] # e.g. ["10.0.0.0/8"] for a corporate VPN

certificate_arn = "arn:aws:acm:eu-west-1:000000000000:certificate/00000000-0000-0000-0000-000000000000" # REPLACE

budget_alert_emails = ["ml-platform-alerts@example.com"]

extra_tags = {
  CostCenter = "ml-prod"
}
