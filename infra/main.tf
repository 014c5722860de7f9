# Perennial on AWS: the root module composes the modules below.
#
#   settings  names, tags, per-environment sizes (provider-free, tested by terraform test)
#   network   VPC, private subnets, VPC endpoints, security groups, flow logs
#   storage   data, artifacts and log buckets, KMS key
#   database  RDS PostgreSQL for Prefect, MLflow and Optuna, one user and secret per service
#   iam       one role per service
#   compute   ECS cluster, Prefect server, Prefect ECS worker, MLflow server, perennial serve,
#             internal ALB
#   serve_token.tf  the bearer token of perennial serve, in Secrets Manager
#   app_secrets.tf  the Prefect auth string, MLflow's users and the model-signing key, in
#             Secrets Manager
#   budget.tf monthly cost budget with email alerts

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

module "settings" {
  source = "./modules/settings"

  project     = var.project
  environment = var.environment
  owner       = var.owner
  account_id  = data.aws_caller_identity.current.account_id
  region      = var.region
  extra_tags  = var.extra_tags
  overrides   = var.overrides
}

locals {
  names      = module.settings.names
  sizing     = module.settings.sizing
  tags       = module.settings.tags
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
}

module "network" {
  source = "./modules/network"

  name_prefix          = module.settings.name_prefix
  region               = var.region
  vpc_cidr             = var.vpc_cidr
  az_count             = local.sizing.az_count
  endpoint_az_count    = local.sizing.endpoint_az_count
  client_cidrs         = var.client_cidrs
  flow_logs_bucket_arn = module.storage.logs_bucket_arn
  tags                 = local.tags
}

module "storage" {
  source = "./modules/storage"

  name_prefix              = module.settings.name_prefix
  account_id               = local.account_id
  region                   = var.region
  partition                = local.partition
  data_bucket_name         = local.names.data_bucket
  artifacts_bucket_name    = local.names.artifacts_bucket
  logs_bucket_name         = local.names.logs_bucket
  landing_to_ia_days       = local.sizing.landing_to_ia_days
  landing_to_glacier_days  = local.sizing.landing_to_glacier_days
  noncurrent_expiry_days   = local.sizing.noncurrent_expiry_days
  log_retention_days       = local.sizing.log_retention_days
  kms_deletion_window_days = local.sizing.kms_deletion_window_days
  tags                     = local.tags
}

module "database" {
  source = "./modules/database"

  name_prefix                 = module.settings.name_prefix
  identifier                  = local.names.db_identifier
  account_id                  = local.account_id
  region                      = var.region
  partition                   = local.partition
  subnet_ids                  = module.network.private_subnet_ids
  security_group_id           = module.network.security_group_ids.database
  engine_version              = var.postgres_engine_version
  instance_class              = local.sizing.db_instance_class
  allocated_storage_gb        = local.sizing.db_allocated_storage_gb
  max_allocated_storage_gb    = local.sizing.db_max_allocated_storage
  multi_az                    = local.sizing.db_multi_az
  backup_retention_days       = local.sizing.db_backup_retention_days
  deletion_protection         = local.sizing.deletion_protection
  master_username             = local.names.db_master_username
  initial_db_name             = local.names.prefect_db_name
  password_version            = var.db_password_version
  secret_name                 = local.names.db_secret
  services                    = module.settings.db_services
  secret_recovery_window_days = local.sizing.secret_recovery_window
  monitoring_role_arn         = module.iam.rds_monitoring_role_arn
  log_retention_days          = local.sizing.log_retention_days
  kms_deletion_window_days    = local.sizing.kms_deletion_window_days
  tags                        = local.tags
}

module "iam" {
  source = "./modules/iam"

  names                  = local.names
  account_id             = local.account_id
  region                 = var.region
  partition              = local.partition
  data_bucket_arn        = module.storage.data_bucket_arn
  state_prefixes         = module.storage.state_prefixes
  artifacts_bucket_arn   = module.storage.artifacts_bucket_arn
  s3_kms_key_arn         = module.storage.kms_key_arn
  db_master_secret_arn   = module.database.secret_arn
  db_service_secret_arns = module.database.service_secret_arns
  db_kms_key_arn         = module.database.kms_key_arn
  serve_token_secret_arn = aws_secretsmanager_secret.serve_token.arn
  app_secret_arns        = local.app_secret_arns
  app_secret_access      = module.settings.secret_access
  tags                   = local.tags
}

module "compute" {
  source = "./modules/compute"

  name_prefix        = module.settings.name_prefix
  names              = local.names
  account_id         = local.account_id
  region             = var.region
  partition          = local.partition
  vpc_id             = module.network.vpc_id
  subnet_ids         = module.network.private_subnet_ids
  security_group_ids = module.network.security_group_ids
  image_tag          = var.image_tag
  cpu_architecture   = var.cpu_architecture
  task_sizes = {
    prefect_server = { cpu = local.sizing.prefect_server_cpu, memory = local.sizing.prefect_server_memory }
    mlflow         = { cpu = local.sizing.mlflow_cpu, memory = local.sizing.mlflow_memory }
    worker         = { cpu = local.sizing.worker_cpu, memory = local.sizing.worker_memory }
    serve          = { cpu = local.sizing.serve_cpu, memory = local.sizing.serve_memory }
  }
  serve = {
    dataset          = var.serve_dataset
    data_bucket      = module.storage.data_bucket
    s3_kms_key_arn   = module.storage.kms_key_arn
    live_sample_rate = var.serve_live_sample_rate
    token_secret_arn = aws_secretsmanager_secret.serve_token.arn
  }
  execution_role_arns = module.iam.execution_role_arns
  task_role_arns      = module.iam.task_role_arns
  app_secret_arns     = local.app_secret_arns
  secret_environment  = module.settings.secret_environment
  mlflow_users        = module.settings.mlflow_users
  database = {
    host              = module.database.address
    port              = module.database.port
    master_username   = module.database.master_username
    master_secret_arn = module.database.secret_arn
    services = {
      for service, db in module.settings.db_services : service => {
        username   = db.username
        database   = db.database
        secret_arn = module.database.service_secret_arns[service]
      }
    }
  }
  artifacts_bucket         = module.storage.artifacts_bucket
  certificate_arn          = var.certificate_arn
  https_only               = local.sizing.https_only
  alb_logs_bucket          = module.storage.logs_bucket
  deletion_protection      = local.sizing.deletion_protection
  log_retention_days       = local.sizing.log_retention_days
  kms_deletion_window_days = local.sizing.kms_deletion_window_days
  tags                     = local.tags
}
