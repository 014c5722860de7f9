"""The report's fairness section: for each group metric (`fairness.metrics`), a plot of the
champion's rate in each group over the monitored batches, and the table of each batch's largest
gaps. Drawn from the monitor's records of labelled batches (tasks/watch/report.py); a dataset
that declares no sensitive column has no such section."""

from __future__ import annotations

import math
from typing import Any

from tasks.watch.report_figures import _pyplot, champion_changes, number, png, styled

MARKERS = "os^vD<>pP*"


def judged_series(batches: list[dict[str, Any]], metric: str) -> dict[str, list[float]]:
    """`column=group` -> the metric on each batch (NaN where the group was absent, too small to
    judge, or the batch unlabelled)."""
    series: dict[str, list[float]] = {}
    for i, batch in enumerate(batches):
        for row in (batch.get("fairness") or {}).get("groups", []):
            if not row.get("judged") or metric not in row:
                continue
            name = f"{row['column']}={row['group']}"
            series.setdefault(name, [math.nan] * len(batches))[i] = row[metric]
    return series


@styled
def fairness_figure(batches: list[dict[str, Any]]) -> str | None:
    """One panel per metric: a line per judged group, over the batches, with a line where the
    champion changed."""
    metrics = sorted({m for b in batches for m in ((b.get("fairness") or {}).get("gaps") or {})})
    if not metrics:
        return None
    plt = _pyplot()
    x = list(range(len(batches)))
    figure, panels = plt.subplots(
        len(metrics), 1, figsize=(10, 2.6 * len(metrics)), sharex=True, squeeze=False
    )
    for axes, metric in zip(panels[:, 0], metrics, strict=True):
        for k, (name, values) in enumerate(sorted(judged_series(batches, metric).items())):
            axes.plot(x, values, marker=MARKERS[k % len(MARKERS)], label=name)
        for i in champion_changes(batches):
            axes.axvline(i - 0.5, color="#2e8b57", linestyle=":", linewidth=1.5)
        axes.set_ylabel(metric)
        axes.grid(axis="y", alpha=0.3)
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=8)
    panels[0, 0].set_title("Champion's rate per group on each labelled batch", loc="left")
    panels[-1, 0].set_xticks(x, [b["batch"] for b in batches], rotation=45 if len(x) > 8 else 0)
    return png(figure)


def fairness_rows(batches: list[dict[str, Any]]) -> list[list[str]]:
    """Per labelled batch: batch, champion, then each metric's largest gap and its column."""
    rows = []
    for batch in batches:
        gaps = (batch.get("fairness") or {}).get("gaps") or {}
        if not gaps:
            continue
        cells = [batch["batch"], f"v{batch['model_version']}"]
        for metric in sorted(gaps):
            known = {c: g for c, g in gaps[metric].items() if isinstance(g, float) and g == g}
            column = max(known, key=known.__getitem__) if known else None
            cells.append(f"{number(known[column])} ({column})" if column else "-")
        rows.append(cells)
    return rows
