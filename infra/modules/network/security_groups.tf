# Security groups. Nothing accepts traffic from 0.0.0.0/0; every rule has a
# description and names its peer (a security group, the VPC CIDR or the S3 prefix list).
# The Prefect and MLflow ports take security groups only, never an address range.
#
#   operators (bastion, Client VPN) --4200/5000/8000--> alb --4200/5000--> app (Prefect, MLflow)
#   runner (Prefect worker, flow runs) --4200/5000--> alb
#   clients in the VPC and client_cidrs --8000--> alb --8000--> serve --5000--> alb (MLflow)
#   app, runner --5432--> database;  app, runner, serve --443--> endpoints, S3

resource "aws_security_group" "alb" {
  #checkov:skip=CKV2_AWS_5:Attached to the load balancer (modules/compute) through this module's security_group_ids output; checkov does not follow cross-module references.
  name        = "${var.name_prefix}-alb"
  description = "Internal load balancer in front of the Prefect and MLflow servers"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name_prefix}-alb" })
}

resource "aws_security_group" "app" {
  #checkov:skip=CKV2_AWS_5:Attached to the Prefect and MLflow services (modules/compute) through this module's security_group_ids output; checkov does not follow cross-module references.
  name        = "${var.name_prefix}-app"
  description = "Prefect server and MLflow server tasks"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name_prefix}-app" })
}

resource "aws_security_group" "runner" {
  #checkov:skip=CKV2_AWS_5:Attached to the worker service (modules/compute) and flow-run tasks through this module's security_group_ids output; checkov does not follow cross-module references.
  name        = "${var.name_prefix}-runner"
  description = "Prefect ECS worker and the flow-run tasks it starts; no ingress"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name_prefix}-runner" })
}

resource "aws_security_group" "serve" {
  #checkov:skip=CKV2_AWS_5:Attached to the perennial serve service (modules/compute) through this module's security_group_ids output; checkov does not follow cross-module references.
  name        = "${var.name_prefix}-serve"
  description = "perennial serve tasks: scoring behind the load balancer, no database"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name_prefix}-serve" })
}

# People: the Prefect UI and MLflow UI. Nothing in the stack uses it; attach it to what people
# come in through (an SSM bastion, a Client VPN endpoint) to reach the load balancer.
resource "aws_security_group" "operators" {
  #checkov:skip=CKV2_AWS_5:Attached by operators to their bastion or Client VPN endpoint, outside this stack; nothing here may use it.
  name        = "${var.name_prefix}-operators"
  description = "Operators reaching the Prefect UI, MLflow and serve on the load balancer; no ingress"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name_prefix}-operators" })
}

resource "aws_security_group" "database" {
  #checkov:skip=CKV2_AWS_5:Attached to the RDS instance (modules/database) through this module's security_group_ids output; checkov does not follow cross-module references.
  name        = "${var.name_prefix}-database"
  description = "RDS PostgreSQL for Prefect, MLflow and Optuna"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name_prefix}-database" })
}

resource "aws_security_group" "endpoints" {
  name        = "${var.name_prefix}-endpoints"
  description = "Interface VPC endpoints for AWS APIs"
  vpc_id      = aws_vpc.this.id

  tags = merge(var.tags, { Name = "${var.name_prefix}-endpoints" })
}

# --- load balancer -------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "alb_from_clients" {
  for_each = {
    for pair in setproduct(local.lb_client_cidrs, keys(local.client_ports)) :
    "${pair[1]}-${pair[0]}" => { cidr = pair[0], port = local.client_ports[pair[1]], service = pair[1] }
  }

  security_group_id = aws_security_group.alb.id
  description       = "${each.value.service} from ${each.value.cidr}"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_from_operators" {
  for_each = local.operator_ports

  security_group_id            = aws_security_group.alb.id
  description                  = "${each.key} API and UI from the operators group"
  referenced_security_group_id = aws_security_group.operators.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "operators_to_alb" {
  for_each = local.operator_ports

  security_group_id            = aws_security_group.operators.id
  description                  = "${each.key} API and UI through the internal load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_from_runner" {
  for_each = local.ports

  security_group_id            = aws_security_group.alb.id
  description                  = "${each.key} API from the worker and flow runs"
  referenced_security_group_id = aws_security_group.runner.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "alb_to_app" {
  for_each = local.ports

  security_group_id            = aws_security_group.alb.id
  description                  = "Forward to the ${each.key} server tasks"
  referenced_security_group_id = aws_security_group.app.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value

  tags = var.tags
}

# --- app: Prefect server, MLflow server -----------------------------------------

resource "aws_vpc_security_group_ingress_rule" "app_from_alb" {
  for_each = local.ports

  security_group_id            = aws_security_group.app.id
  description                  = "${each.key} traffic from the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "to_database" {
  for_each = {
    app    = aws_security_group.app.id
    runner = aws_security_group.runner.id
  }

  security_group_id            = each.value
  description                  = "PostgreSQL"
  referenced_security_group_id = aws_security_group.database.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "to_endpoints" {
  for_each = {
    app    = aws_security_group.app.id
    runner = aws_security_group.runner.id
    serve  = aws_security_group.serve.id
  }

  security_group_id            = each.value
  description                  = "AWS APIs through interface endpoints"
  referenced_security_group_id = aws_security_group.endpoints.id
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443

  tags = var.tags
}

resource "aws_vpc_security_group_egress_rule" "to_s3" {
  for_each = {
    app    = aws_security_group.app.id
    runner = aws_security_group.runner.id
    serve  = aws_security_group.serve.id
  }

  security_group_id = each.value
  description       = "S3 through the gateway endpoint"
  prefix_list_id    = data.aws_ec2_managed_prefix_list.s3.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443

  tags = var.tags
}

# --- runner: Prefect worker and flow runs ---------------------------------------

resource "aws_vpc_security_group_egress_rule" "runner_to_alb" {
  for_each = local.ports

  security_group_id            = aws_security_group.runner.id
  description                  = "${each.key} API through the internal load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = each.value
  to_port                      = each.value

  tags = var.tags
}

# --- database and endpoints -----------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "database_from" {
  for_each = {
    app    = aws_security_group.app.id
    runner = aws_security_group.runner.id
  }

  security_group_id            = aws_security_group.database.id
  description                  = "PostgreSQL from ${each.key} tasks"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "endpoints_from" {
  for_each = {
    app    = aws_security_group.app.id
    runner = aws_security_group.runner.id
    serve  = aws_security_group.serve.id
  }

  security_group_id            = aws_security_group.endpoints.id
  description                  = "HTTPS to AWS APIs from ${each.key} tasks"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 443
  to_port                      = 443

  tags = var.tags
}

# --- serve: perennial serve (scoring), behind the load balancer ------------------

resource "aws_vpc_security_group_egress_rule" "alb_to_serve" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Forward to the perennial serve tasks"
  referenced_security_group_id = aws_security_group.serve.id
  ip_protocol                  = "tcp"
  from_port                    = local.serve_port
  to_port                      = local.serve_port

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "serve_from_alb" {
  security_group_id            = aws_security_group.serve.id
  description                  = "Scoring requests from the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.serve_port
  to_port                      = local.serve_port

  tags = var.tags
}

# The service loads champion and challenger from the MLflow registry, through the load balancer.
resource "aws_vpc_security_group_egress_rule" "serve_to_alb" {
  security_group_id            = aws_security_group.serve.id
  description                  = "MLflow registry through the internal load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.ports.mlflow
  to_port                      = local.ports.mlflow

  tags = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_from_serve" {
  security_group_id            = aws_security_group.alb.id
  description                  = "MLflow API from the perennial serve tasks"
  referenced_security_group_id = aws_security_group.serve.id
  ip_protocol                  = "tcp"
  from_port                    = local.ports.mlflow
  to_port                      = local.ports.mlflow

  tags = var.tags
}
