output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "private_subnet_ids" {
  description = "IDs of the private subnets, one per availability zone."
  value       = [for az in local.azs : aws_subnet.private[az].id]
}

output "security_group_ids" {
  description = "Security group IDs by role: alb, app, runner, serve, operators, database, endpoints."
  value = {
    alb       = aws_security_group.alb.id
    operators = aws_security_group.operators.id
    app       = aws_security_group.app.id
    runner    = aws_security_group.runner.id
    serve     = aws_security_group.serve.id
    database  = aws_security_group.database.id
    endpoints = aws_security_group.endpoints.id
  }
}

output "s3_endpoint_id" {
  description = "ID of the S3 gateway endpoint."
  value       = aws_vpc_endpoint.s3.id
}
