"""Data in: landing a batch immutably, the file checks and the Great Expectations gate (a
blocking gate: a failed batch is quarantined with its reason), the suite's drafting and
reference checks, Data Docs, bulk ingest, drafting a dataset's YAML, and the features and time
split read off validated batches."""
