# Tests of modules/settings, the provider-free module that computes names, tags and
# per-environment sizes. Run from the repo root with infra/check.sh (it runs
# `terraform test` in infra/modules/settings with -test-directory pointing here).

variables {
  project    = "perennial"
  account_id = "123456789012"
  region     = "eu-west-1"
  owner      = "ml-platform"
}

run "dev_names_and_tags" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
    extra_tags  = { CostCenter = "ml-42" }
  }

  assert {
    condition     = output.name_prefix == "perennial-dev"
    error_message = "name prefix must be <project>-<environment>"
  }

  assert {
    condition     = output.names.data_bucket == "perennial-dev-data-123456789012-eu-west-1"
    error_message = "data bucket name must include account id and region"
  }

  assert {
    condition = alltrue([
      for bucket in [output.names.data_bucket, output.names.artifacts_bucket, output.names.logs_bucket] :
      length(bucket) <= 63 && can(regex("^[a-z0-9][a-z0-9.-]+[a-z0-9]$", bucket))
    ])
    error_message = "bucket names must be valid S3 bucket names"
  }

  assert {
    condition = (
      output.tags.Project == "perennial" && output.tags.Environment == "dev" &&
      output.tags.Owner == "ml-platform" && output.tags.ManagedBy == "terraform" &&
      output.tags.Stack == "perennial-dev" && output.tags.CostCenter == "ml-42"
    )
    error_message = "standard tags plus extra tags must be applied"
  }

  assert {
    condition     = output.names.log_group == "/perennial/dev/ecs" && output.names.work_pool == "dev"
    error_message = "log group and work pool names"
  }

  assert {
    condition     = output.is_production == false
    error_message = "dev is not production"
  }
}

run "extra_tags_cannot_override_standard_tags" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
    extra_tags  = { Environment = "prod", Project = "other" }
  }

  assert {
    condition     = output.tags.Environment == "dev" && output.tags.Project == "perennial"
    error_message = "extra_tags must not override standard tags"
  }
}

run "dev_is_small_and_cheap" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
  }

  assert {
    condition     = output.sizing.db_instance_class == "db.t4g.micro" && output.sizing.db_multi_az == false
    error_message = "dev database must be a single-AZ db.t4g.micro"
  }

  assert {
    condition     = output.sizing.deletion_protection == false && output.sizing.kms_deletion_window_days == 7
    error_message = "dev can be torn down"
  }

  assert {
    condition     = output.sizing.endpoint_az_count == 1 && output.sizing.az_count == 2
    error_message = "dev keeps interface endpoints in one AZ"
  }

  assert {
    condition     = output.sizing.monthly_budget_usd == 200
    error_message = "dev budget"
  }
}

run "prod_is_protected_and_redundant" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "prod"
  }

  assert {
    condition     = output.name_prefix == "perennial-prod" && output.is_production
    error_message = "prod naming"
  }

  assert {
    condition     = output.sizing.deletion_protection && output.sizing.db_multi_az
    error_message = "prod must have deletion protection and a Multi-AZ database"
  }

  assert {
    condition     = output.sizing.db_backup_retention_days >= 30 && output.sizing.log_retention_days >= 365
    error_message = "prod keeps backups 30 days and logs at least a year"
  }

  assert {
    condition     = output.sizing.prefect_server_cpu > 512 && output.sizing.endpoint_az_count >= 2
    error_message = "prod is bigger than dev"
  }

  assert {
    condition     = output.sizing.https_only
    error_message = "prod serves HTTPS only"
  }
}

run "each_service_has_its_own_database_user" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "prod"
  }

  assert {
    condition     = toset(keys(output.db_services)) == toset(["prefect_server", "mlflow", "flow_run"])
    error_message = "the Prefect server, the MLflow server and flow runs (Optuna) each get a database user; the worker none"
  }

  assert {
    condition = (
      length(distinct([for db in values(output.db_services) : db.username])) == 3 &&
      !contains([for db in values(output.db_services) : db.username], output.names.db_master_username)
    )
    error_message = "service users are distinct and none is the master user"
  }

  assert {
    condition = (
      output.db_services.prefect_server.database == output.names.prefect_db_name &&
      output.db_services.mlflow.database == output.names.mlflow_db_name &&
      output.db_services.flow_run.database == output.names.optuna_db_name
    )
    error_message = "each service user owns its own database"
  }

  assert {
    condition = (
      length(distinct([for db in values(output.db_services) : db.secret_name])) == 3 &&
      !contains([for db in values(output.db_services) : db.secret_name], output.names.db_secret)
    )
    error_message = "each service has its own secret, apart from the master secret"
  }
}

run "dev_may_serve_http_inside_the_vpc" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
  }

  assert {
    condition     = output.sizing.https_only == false
    error_message = "dev needs no certificate"
  }
}

run "prod_cannot_drop_https" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "prod"
    overrides   = { https_only = false }
  }

  expect_failures = [output.sizing]
}

run "overrides_replace_only_given_fields" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
    overrides = {
      db_instance_class  = "db.t4g.small"
      monthly_budget_usd = 50
    }
  }

  assert {
    condition     = output.sizing.db_instance_class == "db.t4g.small" && output.sizing.monthly_budget_usd == 50
    error_message = "overrides must apply"
  }

  assert {
    condition     = output.sizing.db_multi_az == false && output.sizing.log_retention_days == 30
    error_message = "fields not overridden keep the environment default"
  }
}

run "rejects_unknown_environment" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "staging"
  }

  expect_failures = [var.environment]
}

run "rejects_bad_project_name" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
    project     = "Perennial_ML"
  }

  expect_failures = [var.project]
}

run "rejects_invalid_fargate_size" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
    overrides   = { worker_cpu = 256, worker_memory = 4096 }
  }

  expect_failures = [output.sizing]
}

run "prod_cannot_drop_protection" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "prod"
    overrides   = { deletion_protection = false }
  }

  expect_failures = [output.sizing]
}

run "rejects_invalid_log_retention" {
  command = plan

  module {
    source = "../modules/settings"
  }

  variables {
    environment = "dev"
    overrides   = { log_retention_days = 45 }
  }

  expect_failures = [output.sizing]
}
