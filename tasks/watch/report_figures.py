"""The report's figures, drawn with matplotlib (Agg) as inline base64 PNGs (data: URLs), so the
page needs no file or server beside it. Matplotlib's mathtext is off: a `$` in a feature name is
drawn as written. The data is what tasks/watch/report.py `gather` returns."""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Callable
from typing import Any, ParamSpec

from tasks.core.metrics import METRICS

P = ParamSpec("P")

GREEN, RED, GREY, BLUE, ORANGE, INK = "#2e8b57", "#c0392b", "#95a5a6", "#2c6fbb", "#e67e22", "#333"


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if finite(value) else "-"


# -- figures ----------------------------------------------------------------------------------


LOOK = {"text.parse_math": False, "font.size": 9, "axes.spines.top": False}
LOOK["axes.spines.right"] = False


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def styled(draw: Callable[P, str | None]) -> Callable[P, str | None]:
    """Draw under matplotlib's default style plus ours, whatever the process set globally
    (Optuna's plots switch it to ggplot), and leave the global style as it was."""

    @functools.wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> str | None:
        plt = _pyplot()
        with plt.style.context("default"), plt.rc_context(LOOK):
            return draw(*args, **kwargs)

    return drawn


def png(figure: Any) -> str:
    """The figure as a data: URL (closed after)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def champion_changes(batches: list[dict[str, Any]]) -> list[int]:
    """Indexes of the batches whose champion differs from the previous batch's."""
    return [
        i
        for i in range(1, len(batches))
        if batches[i]["model_version"] != batches[i - 1]["model_version"]
    ]


@styled
def metrics_figure(batches: list[dict[str, Any]], metric: str = "roc_auc") -> str | None:
    """The judged metric, real and estimated before labels, per batch (top); the label's
    statistic and the mean prediction (bottom); a line where the champion changed."""
    from tasks.watch.task_metrics import LABEL_STATISTIC, task_of

    if not batches:
        return None
    plt = _pyplot()
    title = METRICS[metric].title
    x = list(range(len(batches)))
    labelled = [b.get("labelled") or {} for b in batches]
    estimated = [b.get("estimated") or {} for b in batches]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 5.2), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    real = [m.get(metric, math.nan) for m in labelled]
    guess = [e.get("value", e.get("estimated_auc", math.nan)) for e in estimated]
    guess = [math.nan if g is None else g for g in guess]
    top.plot(x, real, "o-", color=BLUE, label=f"{title} on the batch's labels")
    top.plot(x, guess, "s--", color=ORANGE, label=f"{title} estimated before labels")
    top.set_ylabel(title)
    key, statistic = LABEL_STATISTIC.get(task_of(metric), ("", "label"))
    bottom.plot(
        x,
        [m.get(key, math.nan) for m in labelled],
        "o-",
        color=INK,
        label=f"{statistic} (labels)",
    )
    bottom.plot(
        x,
        [m.get("mean_prediction", math.nan) for m in labelled],
        "^:",
        color=GREY,
        label="mean prediction",
    )
    bottom.set_ylabel(statistic)
    for axes in (top, bottom):
        for i in champion_changes(batches):
            axes.axvline(i - 0.5, color=GREEN, linestyle=":", linewidth=1.5)
        axes.grid(axis="y", alpha=0.3)
    top.set_title("Champion on each batch (green lines: new champion)", loc="left")
    for i in [0, *champion_changes(batches)]:
        top.annotate(
            f"v{batches[i]['model_version']}",
            (i - 0.45, 0.97),
            xycoords=("data", "axes fraction"),
            va="top",
            ha="left",
            color=GREEN,
            fontweight="bold",
        )
    top.set_xlim(-0.6, len(batches) - 0.4)  # room for the first champion's label
    top.legend(loc="lower left", frameon=False)
    bottom.legend(loc="upper left", frameon=False)
    bottom.set_xticks(x, [b["batch"] for b in batches], rotation=45 if len(x) > 8 else 0)
    return png(figure)


@styled
def replay_figure(replay: dict[str, Any]) -> str | None:
    """The realized metric per batch (the champion's of the moment, on the batch's labels), one
    line per retrain policy replayed over the history (`perennial replay`)."""
    policies = replay.get("policies") or {}
    batches = replay.get("batches") or []
    if not policies or not batches:
        return None
    plt = _pyplot()
    title = METRICS[replay.get("metric", "roc_auc")].title
    figure, axes = plt.subplots(figsize=(10, 3.8))
    x = list(range(len(batches)))
    for name, summary in policies.items():
        mean = summary.get("mean_realized", summary.get("mean_realized_auc", math.nan))
        axes.plot(x, summary["per_batch"], "o-", label=f"{name} (mean {mean:.4f})")
    axes.set_xticks(x, batches, rotation=45 if len(x) > 8 else 0)
    axes.set_ylabel(f"realized {title}")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="lower left", frameon=False, fontsize=8)
    axes.set_title(
        f"Replay: {title} of the model in production on each batch, per policy", loc="left"
    )
    return png(figure)


@styled
def decisions_figure(decisions: list[dict[str, Any]], title: str = "AUC") -> str | None:
    """Challenger against champion on the same holdout in the judged metric (`title`), one
    column per decision."""
    shown = [d for d in decisions if finite(d["challenger_value"])]
    if not shown:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(10, 3.4))
    for i, d in enumerate(shown):
        promoted = d["decision"] == "promoted"
        champion, challenger = d["champion_value"], d["challenger_value"]
        if finite(champion):
            axes.plot([i, i], [champion, challenger], color=GREY, zorder=1)
            axes.scatter(i, champion, s=60, facecolor="white", edgecolor=INK, zorder=2)
        axes.scatter(i, challenger, s=60, color=GREEN if promoted else RED, zorder=3)
    axes.scatter([], [], s=60, facecolor="white", edgecolor=INK, label="champion")
    axes.scatter([], [], color=GREEN, label="challenger, promoted")
    axes.scatter([], [], color=RED, label="challenger, kept out")
    axes.set_xticks(range(len(shown)), [f"v{d['version']}\n{d['holdout']}" for d in shown])
    axes.set_ylabel(f"holdout {title}")
    axes.set_title("Challenger vs champion at each decision (same holdout)", loc="left")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="best", frameon=False)
    return png(figure)


@styled
def drift_figure(batches: list[dict[str, Any]], warn: float, alert: float) -> str | None:
    """PSI per feature (rows) per batch (columns), coloured up to twice the alert level."""
    if not batches:
        return None
    import numpy as np

    plt = _pyplot()
    features = sorted({f for b in batches for f in b["drift"]["psi"]})
    grid = np.array([[b["drift"]["psi"].get(f, np.nan) for b in batches] for f in features])
    figure, axes = plt.subplots(figsize=(10, 0.32 * len(features) + 1.6))
    image = axes.imshow(grid, aspect="auto", cmap="YlOrRd", vmin=0, vmax=2 * alert)
    for (row, column), value in np.ndenumerate(grid):
        if np.isfinite(value):
            dark = value >= 1.2 * alert
            axes.text(
                column,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if dark else INK,
            )
    axes.set_yticks(range(len(features)), features)
    labels = [f"{b['batch']}\n{b['drift']['status']}" for b in batches]
    axes.set_xticks(range(len(batches)), labels, rotation=45 if len(batches) > 8 else 0)
    for tick, b in zip(axes.get_xticklabels(), batches, strict=True):
        tick.set_color(RED if b["drift"]["status"] == "alert" else INK)
    bar = figure.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
    bar.set_label(f"PSI (warn {warn}, alert {alert})")
    axes.set_title("Drift: PSI of each feature against the champion's reference", loc="left")
    return png(figure)


@styled
def cost_figure(costs: list[dict[str, Any]]) -> str | None:
    """Wall and CPU seconds per training run, its estimated price above."""
    if not costs:
        return None
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(10, 3))
    x = range(len(costs))
    wall = [c.get("wall_seconds", 0.0) for c in costs]
    axes.bar([i - 0.2 for i in x], wall, 0.4, color=BLUE, label="wall s")
    axes.bar(
        [i + 0.2 for i in x],
        [c.get("cpu_seconds", 0.0) for c in costs],
        0.4,
        color=GREY,
        label="CPU s",
    )
    for i, c in zip(x, costs, strict=True):
        axes.annotate(
            f"${c.get('usd', 0.0):.5f}",
            (i, wall[i]),
            ha="center",
            va="bottom",
            fontsize=7,
            xytext=(0, 2),
            textcoords="offset points",
        )
    axes.set_xticks(list(x), [run_name(c) for c in costs])
    axes.set_ylabel("seconds")
    axes.set_ylim(0, max([*wall, *(c.get("cpu_seconds", 0.0) for c in costs), 1.0]) * 1.25)
    axes.set_title("Cost of each training run (estimated price above each)", loc="left")
    axes.legend(loc="upper right", frameon=False, ncol=2)
    return png(figure)


def run_name(cost: dict[str, Any]) -> str:
    return f"v{cost['version']}" if cost.get("version") else str(cost["run_id"])[:8]
