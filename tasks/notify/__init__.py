"""Alerts: what happened (a batch quarantined, drift, a champion moved, a run failed) sent to
the channels a dataset's YAML names (Slack, email, webhook), de-duplicated and never blocking
the run that raised them."""
