"""Watching the model in production: the drift reference profile and a batch measured against
it, what alerts, live traffic sampled from serving, estimates of performance before labels,
A/B arms, the report, and the replay of retrain policies over a dataset's history."""
