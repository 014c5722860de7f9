"""The ground floor: the one config model read from a dataset's YAML, the one storage layer
(local folder or S3) with its catalog of keys, batch ids and their periods, the target
expression's small grammar, and the small plumbing every stage shares (run logging, Prefect
artifact keys, process liveness). Nothing here knows a stage."""
