output "execution_role_arns" {
  description = "ECS task execution role by task family (prefect_server, mlflow, worker, flow_run, serve, db_bootstrap): image pull, logs, its own secrets."
  value       = { for family, role in aws_iam_role.execution : family => role.arn }
}

output "task_role_arns" {
  description = "Task role ARNs by service: prefect_server, mlflow, worker, flow_run, serve."
  value       = { for service, role in aws_iam_role.task : service => role.arn }
}

output "rds_monitoring_role_arn" {
  description = "Role used by RDS enhanced monitoring."
  value       = aws_iam_role.rds_monitoring.arn
}
