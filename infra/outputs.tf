# --- what Perennial needs: export these four variables ---------------------------

output "perennial_env" {
  description = "Environment variables pointing Perennial at this stack (also set PGPASSWORD from db_service_secret_arns.flow_run, key \"password\": Optuna logs in as the flow_run user; PREFECT_API_AUTH_STRING and MLFLOW_TRACKING_USERNAME/PASSWORD from app_secret_arns)."
  value = {
    PERENNIAL_HOME           = "s3://${module.storage.data_bucket}"
    PERENNIAL_MLFLOW_URI     = module.compute.mlflow_url
    PERENNIAL_OPTUNA_STORAGE = local.optuna_storage
    PREFECT_API_URL          = module.compute.prefect_api_url
    PERENNIAL_S3_KMS_KEY_ID  = module.storage.kms_key_arn # the bucket policy refuses other keys
  }
}

locals {
  # Optuna's storage, as the flow_run user (never the master user); PGPASSWORD comes from its secret.
  optuna_storage = "postgresql+psycopg://${module.settings.db_services.flow_run.username}@${module.database.address}:${module.database.port}/${module.settings.db_services.flow_run.database}?sslmode=require"
}

output "db_secret_arn" {
  description = "Master PostgreSQL secret (JSON keys username, password): read only by the db-bootstrap task."
  value       = module.database.secret_arn
}

output "db_service_secret_arns" {
  description = "Each service's own PostgreSQL secret (JSON keys username, password, dbname), by service: prefect_server, mlflow, flow_run."
  value       = module.database.service_secret_arns
}

output "db_users" {
  description = "PostgreSQL user and database of each service; the db-bootstrap task creates them."
  value       = module.database.service_users
}

output "db_bootstrap_task_definition" {
  description = "Task definition family that creates the services' database users: run it once after the first apply and after every password rotation (infra/README.md)."
  value       = module.compute.db_bootstrap_task_definition
}

# --- what an ECS Prefect work pool needs ------------------------------------------

output "work_pool_name" {
  description = "Name of the Prefect ECS work pool the worker service polls."
  value       = local.names.work_pool
}

output "ecs_cluster_arn" {
  description = "ARN of the ECS cluster flow runs start in."
  value       = module.compute.cluster_arn
}

output "vpc_id" {
  description = "VPC of the flow-run tasks."
  value       = module.network.vpc_id
}

output "subnet_ids" {
  description = "Private subnets of the flow-run tasks."
  value       = module.network.private_subnet_ids
}

output "security_group_id" {
  description = "Security group of the flow-run tasks (reaches the ALB, PostgreSQL, S3 and AWS APIs; no ingress)."
  value       = module.network.security_group_ids.runner
}

output "task_role_arn" {
  description = "Task role of flow runs (data bucket state root, landing/ write-once)."
  value       = module.iam.task_role_arns["flow_run"]
}

output "execution_role_arn" {
  description = "Execution role of flow runs (image pull, logs, the flow_run database secret only)."
  value       = module.iam.execution_role_arns["flow_run"]
}

output "image" {
  description = "Perennial image (infra/Dockerfile, pushed to ecr_repository_url with image_tag) for the services and flow runs."
  value       = module.compute.image
}

output "log_group_name" {
  description = "CloudWatch log group for flow-run logs."
  value       = module.compute.log_group_name
}

output "ecs_work_pool_job_variables" {
  description = "Defaults for the ECS work pool's job variables (prefect-aws base job template), built from the outputs above."
  value = {
    cluster            = module.compute.cluster_arn
    vpc_id             = module.network.vpc_id
    task_role_arn      = module.iam.task_role_arns["flow_run"]
    execution_role_arn = module.iam.execution_role_arns["flow_run"]
    image              = module.compute.image
    family             = local.names.flow_run_family
    cpu                = local.sizing.flow_run_cpu
    memory             = local.sizing.flow_run_memory
    network_configuration = {
      subnets        = module.network.private_subnet_ids
      securityGroups = [module.network.security_group_ids.runner]
      assignPublicIp = "DISABLED"
    }
    cloudwatch_logs_options = {
      awslogs-group         = module.compute.log_group_name
      awslogs-region        = var.region
      awslogs-stream-prefix = "flow-runs"
    }
    # A Prefect worker hands its own settings to the runs it starts as plain environment,
    # its auth string included: null drops it, so a flow run's auth string comes only from
    # its container secret (flow_run_container_secrets).
    env = merge(module.compute.flow_run_environment, {
      PERENNIAL_HOME           = "s3://${module.storage.data_bucket}"
      PERENNIAL_MLFLOW_URI     = module.compute.mlflow_url
      PERENNIAL_OPTUNA_STORAGE = local.optuna_storage
      PREFECT_API_URL          = module.compute.prefect_api_url
      PERENNIAL_S3_KMS_KEY_ID  = module.storage.kms_key_arn
      MLFLOW_DISABLE_TELEMETRY = "true"
      PREFECT_API_AUTH_STRING  = null
    })
  }
}

# --- operations ------------------------------------------------------------------

output "serve_url" {
  description = "perennial serve behind the internal load balancer (POST /predict with Authorization: Bearer <serve_token_secret_arn's value>)."
  value       = module.compute.serve_url
}

output "serve_token_secret_arn" {
  description = "Secrets Manager secret holding the bearer token of perennial serve."
  value       = aws_secretsmanager_secret.serve_token.arn
}

output "ecr_repository_url" {
  description = "Push the Perennial image here (tag = image_tag)."
  value       = module.compute.ecr_repository_url
}

output "data_bucket" {
  description = "Data bucket (Perennial's state root)."
  value       = module.storage.data_bucket
}

output "artifacts_bucket" {
  description = "MLflow artifacts bucket."
  value       = module.storage.artifacts_bucket
}

output "database_endpoint" {
  description = "PostgreSQL host:port."
  value       = "${module.database.address}:${module.database.port}"
}

output "flow_run_container_secrets" {
  description = "ECS container secrets for flow runs (PGPASSWORD, PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME/PASSWORD of the flow_run MLflow user, PERENNIAL_MODEL_SIGNING_KEY): infra/workpool.py puts them in the work pool's task_definition.containerDefinitions[0].secrets."
  value       = module.compute.flow_run_secrets
}

output "app_secret_arns" {
  description = "Secrets Manager ARN of each application credential: prefect_api_auth (PREFECT_API_AUTH_STRING for clients and the UI), mlflow_admin / mlflow_flow_run / mlflow_serve (JSON username, password), mlflow_session_key, model_signing_key."
  value       = local.app_secret_arns
}

output "operators_security_group_id" {
  description = "Security group whose members reach the Prefect UI/API (:4200), MLflow (:5000) and serve (:8000) on the load balancer: attach it to a bastion or a Client VPN endpoint."
  value       = module.network.security_group_ids.operators
}
