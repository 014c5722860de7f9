"""Model versions trained on erased rows: `perennial forget` tags each version whose training
batches held the subject (`perennial.erased`: the erasure's id, when, and the batches), and
`perennial status` lists them. The tag is the record; the model is not withdrawn (what the data
protection law asks of a model trained on erased data is a judgement Perennial does not make):
a retrain on the erased batches follows the dataset's normal policy.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.core.config import PerennialConfig
from tasks.registry.lineage import batches_seen

ERASED_TAG = "perennial.erased"


def erasures_of(tags: dict[str, str]) -> list[dict[str, Any]]:
    """The erasures recorded on a version (oldest first)."""
    return list(json.loads(tags.get(ERASED_TAG, "[]")))


def mark_trained_on(
    config: PerennialConfig, batches: list[str], erasure: str, when: str
) -> list[str]:
    """Tag every version of the dataset's model trained on any of `batches`; returns their
    numbers. Marking twice with one erasure id adds nothing (a resumed erasure)."""
    from tasks.registry.client import connect

    client = connect(config)
    marked = []
    for version in client.search_model_versions(f"name = '{config.model_name}'"):
        touched = sorted(set(batches) & set(batches_seen(version.tags)))
        if not touched:
            continue
        recorded = erasures_of(version.tags)
        if all(entry["erasure"] != erasure for entry in recorded):
            recorded.append({"erasure": erasure, "at": when, "batches": touched})
            client.set_model_version_tag(
                config.model_name, version.version, ERASED_TAG, json.dumps(recorded)
            )
        marked.append(str(version.version))
    return sorted(marked, key=int)


def erased_versions(config: PerennialConfig) -> list[dict[str, Any]]:
    """Versions trained on erased rows, as `status` shows them (through MLflow's client)."""
    from tasks.registry.client import connect

    found = connect(config).search_model_versions(f"name = '{config.model_name}'")
    return erased_entries({str(v.version): dict(v.tags) for v in found})


def erased_entries(tags_by_version: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    """`[{version, erasures}]` for the versions that carry the tag, newest first."""
    return [
        {"version": version, "erasures": erasures_of(tags)}
        for version, tags in sorted(tags_by_version.items(), key=lambda item: -int(item[0]))
        if ERASED_TAG in tags
    ]
