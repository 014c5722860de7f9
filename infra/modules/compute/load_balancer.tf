# Internal application load balancer: Prefect API/UI on 4200, MLflow on 5000, perennial serve
# on 8000. Its security group (modules/network) lets 4200 and 5000 in from the runner, serve and
# operators groups only, and 8000 from the VPC and client_cidrs too.

resource "aws_lb" "this" {
  name                       = var.names.alb
  internal                   = true
  load_balancer_type         = "application"
  security_groups            = [var.security_group_ids.alb]
  subnets                    = var.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 120

  access_logs {
    bucket  = var.alb_logs_bucket
    prefix  = "alb"
    enabled = true
  }

  tags = merge(var.tags, { Name = var.names.alb })
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:Targets are Fargate tasks in private subnets reached only from the load balancer security group; TLS is terminated at the listener (set certificate_arn).
  for_each = {
    prefect = { name = var.names.tg_prefect, port = local.ports.prefect, health = "/api/health" }
    mlflow  = { name = var.names.tg_mlflow, port = local.ports.mlflow, health = "/health" }
    serve   = { name = var.names.tg_serve, port = local.ports.serve, health = "/health" }
  }

  name                 = each.value.name
  port                 = each.value.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = each.value.health
    matcher             = "200"
    interval            = 30
    timeout             = 10
    healthy_threshold   = 2
    unhealthy_threshold = 5
  }

  tags = merge(var.tags, { Name = each.value.name })
}

# HTTPS with a TLS 1.2+ policy when certificate_arn is set. Without a certificate (one
# needs a DNS name) the listeners of an environment that is not https_only serve plain HTTP,
# reachable only inside the VPC (see the alb security group). With https_only (prod) they are HTTPS
# whatever happens, and refuse to exist without a certificate of this account and region: there
# is no HTTP listener to fall back to, and no port-80 redirect either (nothing listens on 80).
resource "aws_lb_listener" "this" {
  for_each = local.ports

  load_balancer_arn = aws_lb.this.arn
  port              = each.value
  protocol          = local.listener_protocol
  certificate_arn   = var.certificate_arn
  ssl_policy        = local.use_tls ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[each.key].arn
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = !var.https_only || var.certificate_arn != null
      error_message = "This environment serves HTTPS only: set certificate_arn to an ACM certificate for the load balancer's internal DNS name."
    }

    precondition {
      # A conditional, not ||: Terraform evaluates both sides of || and split(null) fails.
      condition     = var.certificate_arn == null ? true : (try(split(":", var.certificate_arn)[3], "") == var.region && try(split(":", var.certificate_arn)[4], "") == var.account_id)
      error_message = "certificate_arn must be an ACM certificate of this account and region (replace the placeholder in envs/prod.tfvars)."
    }
  }
}
