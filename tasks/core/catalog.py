"""Catalog: where every stored dataset lives, relative to the state root (`PERENNIAL_HOME`).

The one place a storage key is spelled (in the spirit of a Kedro catalog). Raw data and what
the gate makes of it belong to the dataset; what a model produces (its drift reference, its
predictions) sits under that model's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from tasks.core.batches import check_batch

if TYPE_CHECKING:
    from tasks.core.config import PerennialConfig

LANDING = "landing/"  # raw data: never overwritten, never deleted
LANDED_SUFFIX = ".landed.json"

Entry = Literal[
    "validated",
    "validated_summary",
    "quarantined_file",
    "reference",
    "predictions",
    "drift_plot",
    "live_folder",
    "live_part",
    "live_drift_plot",
    "alerts",
    "quarantine_folder",
    "batch_record",
    "batch_records",
    "report_page",
    "replay",
    "source_cache",
    "erasure_journal",
    "erasure_audit",
]
CATALOG: dict[Entry, str] = {
    # batches that passed the gate, and the gate's summary of each
    "validated": "validated/{dataset}/{batch}.parquet",
    "validated_summary": "validated/{dataset}/{batch}.json",
    # a quarantined copy keeps the landed file's name (reasons: `quarantine_reason_key`)
    "quarantined_file": "quarantine/{dataset}/{file}",
    # a model version's drift reference profile, and a batch scored by the model
    "reference": "reference/{dataset}/{model}/{version}.json",
    "predictions": "predictions/{dataset}/{model}/{batch}.parquet",
    # drift plots
    "drift_plot": "reports/{dataset}/drift-{batch}.png",
    # live traffic sampled by `perennial serve`: one part per write, never rewritten
    "live_folder": "live/{dataset}/{model}/{batch}",
    "live_part": "live/{dataset}/{model}/{batch}/{part}.parquet",
    "live_drift_plot": "reports/{dataset}/live-drift-{batch}.png",
    # alerts sent: `<subject>.<n>.json` claims the n-th alert of that kind and subject
    "alerts": "alerts/{dataset}/{kind}",
    "quarantine_folder": "quarantine/{dataset}",
    # what monitoring saw of a batch with a model version (drift, CBPE estimate and, once the
    # labels are in, the real metrics): written once per (version, batch); the report reads them
    "batch_record": "monitoring/{dataset}/{model}/{batch}.v{version}.json",
    "batch_records": "monitoring/{dataset}/{model}",
    # the self-contained HTML report of a model (`perennial report`)
    "report_page": "reports/{model}.html",
    # `perennial replay`: what each retrain policy delivered over the dataset's history
    "replay": "reports/{dataset}/replay.json",
    # Parquet copies of package-table sources (a cache: deleting it costs one slower read)
    "source_cache": "cache/sources",
    # `perennial forget`: an erasure in progress (what it has done so far, so that a rerun
    # resumes), and the audit log, one entry per erasure (who, when, why, which files; no values)
    "erasure_journal": "audit/{dataset}/erasures/{erasure}.pending.json",
    "erasure_audit": "audit/{dataset}/erasures/{erasure}.json",
}


def key(entry: Entry, config: PerennialConfig, **parts: str) -> str:
    """The storage key of a catalog entry, e.g. `key("validated", config, batch="2013-01")`.
    A batch id is checked here too, where every key is spelled: whatever entry point forgot to,
    no path can reach storage through it."""
    if "batch" in parts:
        check_batch(parts["batch"], config.time)
    return CATALOG[entry].format(dataset=config.dataset, model=config.model_name, **parts)


def landing_folder(config: PerennialConfig) -> str:
    return f"{LANDING}{config.dataset}"


def landing_key(config: PerennialConfig, batch: str, ext: str, revision: int = 1) -> str:
    """A landed revision's raw file (`ext` `.landed.json`: its record); revision 1 has no
    `.r<N>` suffix."""
    check_batch(batch, config.time)
    suffix = "" if revision == 1 else f".r{revision}"
    return f"{landing_folder(config)}/{batch}{suffix}{ext}"


def quarantine_reason_key(config: PerennialConfig, batch: str, revision: int | None = None) -> str:
    """The reason of the newest revision, or (with `revision`) an earlier one's, archived."""
    check_batch(batch, config.time)
    middle = "" if revision is None else f".r{revision}"
    return f"quarantine/{config.dataset}/{batch}{middle}.reason.json"
