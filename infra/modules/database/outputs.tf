output "address" {
  description = "DNS name of the PostgreSQL endpoint."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "master_username" {
  description = "Master user name (the password is in the secret)."
  value       = aws_db_instance.this.username
}

output "secret_arn" {
  description = "ARN of the master secret {username, password}: for the db-bootstrap task only."
  value       = aws_secretsmanager_secret.master.arn
}

output "service_secret_arns" {
  description = "ARN of each service's own secret {username, password, dbname}, by service."
  value       = { for service, secret in aws_secretsmanager_secret.service : service => secret.arn }
}

output "service_users" {
  description = "PostgreSQL user and database of each service, by service."
  value       = { for service, db in var.services : service => { username = db.username, database = db.database } }
}

output "kms_key_arn" {
  description = "ARN of the KMS key encrypting the database, its secret and logs."
  value       = aws_kms_key.database.arn
}

output "instance_arn" {
  description = "ARN of the RDS instance."
  value       = aws_db_instance.this.arn
}
