"""The registry and the judgement: MLflow access, the model's files (no pickle) signed and
checked by hash, the locks that serialise alias moves, the champion's history and rollback; the
challenger scored against the champion on the same holdout (metrics, slices, the decision), its
registration with lineage and cost, its model card, and promotion with the alias moved last."""
