"""Perennial's stages, as packages stacked from the ground up. A package imports only the ones
listed before it (`tests/unit/test_import_graph.py` holds that, and that no modules import each
other in a loop):

- `core`: the config model, storage and its catalog of keys, batch ids, the target expression;
- `notify`: alerts and the channels that carry them;
- `data`: landing, file checks, the Great Expectations gate and the features read off a batch;
- `learn`: the model, the Optuna search and the final XGBoost fit, SHAP;
- `registry`: what MLflow holds (versions, aliases, locks, model files), the judgement of a
  challenger against the champion, and promotion;
- `serve`: scoring with the champion, in batches and in real time;
- `watch`: drift, live traffic, estimates before labels, the report and the replay of policies.

Each stage module holds plain functions (tested without Prefect) and thin `@task` wrappers;
`flows/` wires them.
"""
