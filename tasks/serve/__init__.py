"""Scoring with the registry's champion (and shadow or A/B with its challenger): batch
predictions for a landed batch, and the plain classes behind real-time scoring (the HTTP app is
`flows/serve.py`)."""
