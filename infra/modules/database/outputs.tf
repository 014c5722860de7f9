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
  description = "ARN of the Secrets Manager secret holding {username, password}."
  value       = aws_secretsmanager_secret.master.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key encrypting the database, its secret and logs."
  value       = aws_kms_key.database.arn
}

output "instance_arn" {
  description = "ARN of the RDS instance."
  value       = aws_db_instance.this.arn
}
