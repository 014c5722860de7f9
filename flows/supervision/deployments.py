"""Served mode's deployments: `prefect.yaml` written once, rendered for every dataset YAML of
`configs/` (`python -m flows.supervision.served_stack render` prints the result)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from flows.supervision.served_settings import ServiceError

WORK_POOL = "perennial"
DATASET_TOKEN = "${dataset}"  # prefect.yaml writes each deployment once, for every dataset
WINDOW_TOKEN = "${alert_window_seconds}"  # the dataset's alerts.window_minutes, in seconds


def served_datasets(folder: Path | None = None) -> list[str]:
    """Datasets to serve: every YAML of the configs folder; each must load, and name itself as
    its file does (the drift trigger matches the config's dataset, the parameter the file)."""
    from tasks.core.config import configs_dir, dataset_names, load_config
    from tasks.core.config_section import ConfigError

    root = folder or configs_dir()
    names = dataset_names(root)
    if not names:
        raise ServiceError(f"no dataset YAML in {root}: add one (configs/flights.yaml is the demo)")
    for name in names:
        try:
            config = load_config(root / f"{name}.yaml")
        except ConfigError as exc:
            raise ServiceError(f"cannot serve {name}: {exc}") from None
        if config.dataset != name:
            raise ServiceError(
                f"{root / name}.yaml names dataset {config.dataset!r}: rename the file "
                f"{config.dataset}.yaml so deployments, triggers and events agree"
            )
    return names


def alert_windows(datasets: list[str]) -> dict[str, float]:
    """Each dataset's de-duplication window of alerts and drift retrains, in minutes."""
    from tasks.core.config import dataset_config

    return {name: dataset_config(name).alerts.window_minutes for name in datasets}


def render_deployments(
    template: str, datasets: list[str], windows: dict[str, float] | None = None
) -> str:
    """prefect.yaml with each deployment repeated for every dataset (`${dataset}` replaced, and
    `${alert_window_seconds}` by the dataset's window: `windows`, in minutes, default 60)."""
    import yaml

    document = yaml.safe_load(template)

    def replace(value: Any, name: str) -> Any:
        if value == WINDOW_TOKEN:
            return round((windows or {}).get(name, 60.0) * 60)
        if isinstance(value, str):
            return value.replace(DATASET_TOKEN, name)
        if isinstance(value, list):
            return [replace(item, name) for item in value]
        if isinstance(value, dict):
            return {key: replace(item, name) for key, item in value.items()}
        return value

    document["deployments"] = [
        replace(copy.deepcopy(deployment), name)
        for deployment in document["deployments"]
        for name in datasets
    ]
    return yaml.safe_dump(document, sort_keys=False)
