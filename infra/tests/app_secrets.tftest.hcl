# Tests of the application credentials table in modules/settings: which secret the stack
# generates, and which task family (execution role) gets each one as which environment variable.
# modules/iam lets each execution role read exactly the secrets of its family, and
# modules/compute injects them as ECS container secrets, both from these outputs.

variables {
  project     = "perennial"
  account_id  = "123456789012"
  region      = "eu-west-1"
  owner       = "ml-platform"
  environment = "prod"
}

run "each_app_secret_is_read_only_by_the_tasks_that_need_it" {
  command = plan

  module {
    source = "../modules/settings"
  }

  assert {
    condition     = toset(keys(output.app_secrets)) == toset(["prefect_api_auth", "mlflow_admin", "mlflow_session_key", "mlflow_flow_run", "mlflow_serve", "model_signing_key"])
    error_message = "the stack generates the Prefect auth string, MLflow's admin, session key and two service users, and the model-signing key"
  }

  assert {
    condition     = toset(output.secret_readers.prefect_api_auth) == toset(["prefect_server", "worker", "flow_run"])
    error_message = "the Prefect auth string: the server, the worker and flow runs only"
  }

  assert {
    condition     = toset(output.secret_readers.mlflow_admin) == toset(["mlflow", "db_bootstrap"])
    error_message = "MLflow's admin: the MLflow server and the db-bootstrap task only"
  }

  assert {
    condition     = toset(output.secret_readers.mlflow_session_key) == toset(["mlflow"])
    error_message = "MLflow's session key: the MLflow server only"
  }

  assert {
    condition     = toset(output.secret_readers.mlflow_flow_run) == toset(["flow_run", "db_bootstrap"])
    error_message = "the read-write MLflow user: flow runs (and db-bootstrap, which creates it) only"
  }

  assert {
    condition     = toset(output.secret_readers.mlflow_serve) == toset(["serve", "db_bootstrap"])
    error_message = "the read-only MLflow user: serve (and db-bootstrap, which creates it) only"
  }

  assert {
    condition = alltrue([
      for family, secrets in output.secret_access :
      toset(secrets) == toset([for secret, readers in output.secret_readers : secret if contains(readers, family)])
    ])
    error_message = "secret_access (what modules/iam grants) must be secret_readers turned around"
  }

  assert {
    condition = (
      length(distinct([for secret in values(output.app_secrets) : secret.secret_name])) == length(output.app_secrets) &&
      alltrue([for secret in values(output.app_secrets) : startswith(secret.secret_name, "perennial/prod/")])
    )
    error_message = "one secret each, named under <project>/<environment>/"
  }
}

run "prefect_server_requires_the_auth_string" {
  command = plan

  module {
    source = "../modules/settings"
  }

  assert {
    condition     = output.secret_environment.prefect_server.PREFECT_SERVER_API_AUTH_STRING.secret == "prefect_api_auth"
    error_message = "the Prefect server gets PREFECT_SERVER_API_AUTH_STRING from the auth-string secret"
  }

  assert {
    condition = alltrue([
      for client in ["worker", "flow_run"] :
      output.secret_environment[client].PREFECT_API_AUTH_STRING.secret == "prefect_api_auth"
    ])
    error_message = "the worker and flow runs send the same auth string as PREFECT_API_AUTH_STRING"
  }
}

run "serve_reads_mlflow_as_the_read_only_user" {
  command = plan

  module {
    source = "../modules/settings"
  }

  assert {
    condition = (
      output.secret_environment.serve.MLFLOW_TRACKING_USERNAME.secret == output.mlflow_users.serve.secret &&
      output.secret_environment.serve.MLFLOW_TRACKING_PASSWORD.secret == output.mlflow_users.serve.secret
    )
    error_message = "serve logs in to MLflow as the serve user"
  }

  assert {
    condition     = output.mlflow_users.serve.permission == "READ" && !output.mlflow_users.serve.admin
    error_message = "the serve user reads models and can change nothing"
  }

  assert {
    condition = (
      output.secret_environment.flow_run.MLFLOW_TRACKING_USERNAME.secret == output.mlflow_users.flow_run.secret &&
      output.mlflow_users.flow_run.permission == "EDIT" && !output.mlflow_users.flow_run.admin
    )
    error_message = "flow runs log in as the read-write flow_run user, no admin"
  }

  assert {
    condition     = [for role, user in output.mlflow_users : role if user.admin] == ["admin"]
    error_message = "only the admin user is an MLflow admin, and only the MLflow server and db-bootstrap hold it"
  }
}

run "model_signing_key_reaches_flow_runs_and_serve_only" {
  command = plan

  module {
    source = "../modules/settings"
  }

  assert {
    condition = toset([
      for family, variables in output.secret_environment : family
      if contains(keys(variables), "PERENNIAL_MODEL_SIGNING_KEY")
    ]) == toset(["flow_run", "serve"])
    error_message = "PERENNIAL_MODEL_SIGNING_KEY goes to flow runs (they sign) and serve (it checks), nowhere else"
  }

  assert {
    condition     = toset(output.secret_readers.model_signing_key) == toset(["flow_run", "serve"])
    error_message = "no other execution role may read the signing key"
  }
}
