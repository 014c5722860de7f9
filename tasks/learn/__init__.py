"""Learning: what a model is (category encoding and an XGBoost booster, kept as JSON and
UBJSON: `scorer`), the training device, the Optuna study and its parallel, pruned search, the
final fit (locally or on Dask) and its refit on the holdout, and SHAP explanations."""
