# terraform plan -var-file=envs/prod.tfvars
# prod: Multi-AZ database, 30 days of backups, deletion protection, 400 days of logs.
# Set certificate_arn to an ACM certificate for an internal DNS name to serve HTTPS.

region      = "eu-west-1"
environment = "prod"
owner       = "ml-platform"
image_tag   = "0.1.0"

vpc_cidr     = "10.41.0.0/16"
client_cidrs = [] # e.g. ["10.0.0.0/8"] for a corporate VPN

certificate_arn = null

budget_alert_emails = ["ml-platform-alerts@example.com"]

extra_tags = {
  CostCenter = "ml-prod"
}
