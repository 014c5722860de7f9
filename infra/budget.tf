# Monthly cost budget of the stack, filtered on the Stack tag. Activate "Stack" as a
# cost allocation tag in the Billing console, or the filter matches nothing.

resource "aws_budgets_budget" "monthly" {
  name         = local.names.budget
  budget_type  = "COST"
  limit_amount = tostring(local.sizing.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  cost_filter {
    name   = "TagKeyValue"
    values = ["user:Stack$${module.settings.name_prefix}"]
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 80
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_email_addresses = var.budget_alert_emails
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_email_addresses = var.budget_alert_emails
  }

  tags = local.tags
}
