output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "ecr_repository_url" {
  description = "URL of the ECR repository for the Perennial image."
  value       = aws_ecr_repository.this.repository_url
}

output "image" {
  description = "Image URI used by the services and by flow runs."
  value       = local.image
}

output "log_group_name" {
  description = "CloudWatch log group of all ECS containers, flow runs included."
  value       = aws_cloudwatch_log_group.ecs.name
}

output "alb_dns_name" {
  description = "DNS name of the internal load balancer."
  value       = aws_lb.this.dns_name
}

output "prefect_api_url" {
  description = "Prefect API URL (PREFECT_API_URL)."
  value       = local.prefect_api_url
}

output "mlflow_url" {
  description = "MLflow tracking URL (PERENNIAL_MLFLOW_URI)."
  value       = local.mlflow_url
}

output "serve_url" {
  description = "URL of perennial serve (POST /predict with Authorization: Bearer <token from the serve token secret>)."
  value       = local.serve_url
}

output "flow_run_environment" {
  description = "Non-secret environment of flow-run containers for PostgreSQL (PGHOST, PGPORT, PGUSER of the flow_run user, PGSSLMODE)."
  value       = { for item in local.pg_environment["flow_run"] : item.name => item.value }
}

output "flow_run_secrets" {
  description = "ECS container secrets for flow runs (PGPASSWORD from the flow_run user's own secret, the Prefect auth string, the flow_run MLflow user, the model-signing key), for the work pool's task definition."
  value       = concat(local.pg_secrets["flow_run"], local.app_secrets["flow_run"])
}

output "db_bootstrap_task_definition" {
  description = "Family of the one-off task that creates the services' database users (run it with aws ecs run-task after apply and after a password rotation)."
  value       = aws_ecs_task_definition.db_bootstrap.family
}
