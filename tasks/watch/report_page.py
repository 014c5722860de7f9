"""The report page: HTML from string templates around the figures of tasks/watch/report_figures.py,
so the file opens offline with no server and asks nothing of the network (no script, font,
stylesheet or image from anywhere; its Content-Security-Policy forbids them too). Every value
that comes from data goes through `html.escape`."""

from __future__ import annotations

from html import escape
from string import Template
from typing import Any

from tasks.core.metrics import METRICS
from tasks.watch.report_fairness import fairness_figure, fairness_rows
from tasks.watch.report_figures import (
    champion_changes,
    cost_figure,
    decisions_figure,
    drift_figure,
    finite,
    metrics_figure,
    number,
    replay_figure,
    run_name,
)
from tasks.watch.task_metrics import LABEL_STATISTIC, companion, task_of

# -- HTML -------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:#222;background:#f4f5f7;margin:0}
main{max-width:1080px;margin:0 auto;padding:24px}
header h1{margin:0 0 4px;font-size:24px}header p{margin:0;color:#666}
section{background:#fff;border-radius:8px;padding:16px 20px;margin:16px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:17px;margin:0 0 10px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(125px,1fr));gap:12px;
background:none;box-shadow:none;padding:0}
.tile{background:#fff;border-radius:8px;padding:12px 14px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.tile b{display:block;font-size:20px}.tile span{color:#666;font-size:12px}
img{max-width:100%;display:block;margin:4px 0 12px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{color:#555;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.change td{border-top:2px solid #2e8b57}
.promoted{color:#2e8b57;font-weight:600}.rejected,.alert{color:#c0392b;font-weight:600}
.warn{color:#e67e22;font-weight:600}.estimate{color:#e67e22}
.empty{color:#777;font-style:italic}
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$model: Perennial report</title><style>$style</style></head>
<body><main>
<header><h1>$model</h1><p>Perennial report of dataset $dataset, generated $generated (UTC).
Self-contained: it opens offline.</p></header>
<section class="tiles">$tiles</section>
<section><h2>Performance per batch</h2>$metrics</section>
$fairness
<section><h2>Promotion decisions</h2>$decisions</section>
<section><h2>Drift per feature</h2>$drift</section>
<section><h2>Retrain policies replayed</h2>$replay</section>
<section><h2>Quarantined batches</h2>$quarantines</section>
<section><h2>Cost per training run</h2>$costs</section>
</main></body></html>
""")


def image(source: str | None, alt: str) -> str:
    return f'<img src="{source}" alt="{escape(alt)}">' if source else ""


def table(head: list[str], rows: list[tuple[list[str], str]]) -> str:
    """`rows` are (cells as HTML already escaped, row class)."""
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        (f'<tr class="{css}">' if css else "<tr>") + "".join(cells) + "</tr>" for cells, css in rows
    )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"


def td(value: Any, css: str = "") -> str:
    attribute = f' class="{escape(css)}"' if css else ""
    return f"<td{attribute}>{escape(str(value))}</td>"


def empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def estimated_value(estimated: dict[str, Any]) -> Any:
    """An estimate's number, as recorded now or (`estimated_auc`) before every task had one."""
    return estimated.get("value", estimated.get("estimated_auc"))


def batches_section(batches: list[dict[str, Any]], metric: str) -> str:
    if not batches:
        return empty("No monitored batch yet: `perennial monitor --batch B` records one.")
    title, other = METRICS[metric].title, companion(metric)
    statistic = LABEL_STATISTIC.get(task_of(metric))
    changes = set(champion_changes(batches))
    rows = []
    for i, b in enumerate(batches):
        real, est = b.get("labelled") or {}, b.get("estimated") or {}
        error = est.get("error")
        drift = b["drift"]
        cells = [
            td(b["batch"]),
            td(f"v{b['model_version']}"),
            td(f"{b['rows']:,}", "n"),
            td(number(real.get(metric)), "n"),
            td(number(estimated_value(est)), "n estimate"),
            td(f"{error:+.4f}" if finite(error) else "-", "n"),
            td(number(real.get(other)), "n"),
            *([td(number(real.get(statistic[0]), 3), "n")] if statistic else []),
            td(f"{drift['status']} ({drift['max_psi']:.2f})", drift["status"]),
        ]
        rows.append((cells, "change" if i in changes else ""))
    head = [
        "batch",
        "champion",
        "rows",
        title,
        f"{title} estimated",
        "estimate - real",
        METRICS[other].title,
        *([statistic[1]] if statistic else []),
        "drift (max PSI)",
    ]
    method = "DLE, a model of its error" if task_of(metric) == "regression" else "CBPE"
    note = (
        f"<p>The estimate is made before labels from the champion's own outputs ({method}, "
        f"fitted on its holdout); the real {escape(title)} is measured once the batch's labels "
        "are in.</p>"
    )
    figure = metrics_figure(batches, metric)
    return image(figure, f"{title} per batch") + note + table(head, rows)


def fairness_section(batches: list[dict[str, Any]]) -> str:
    """Rates per group over time, and each batch's largest gaps: a section only for a dataset
    that declares sensitive columns (`fairness:`)."""
    rows = fairness_rows(batches)
    if not rows:
        return ""
    metrics = sorted(next(b["fairness"]["gaps"] for b in batches if b.get("fairness")))
    head = ["batch", "champion", *(f"largest {m} gap (between groups of)" for m in metrics)]
    body = table(head, [([td(cell) for cell in cells], "") for cells in rows])
    return (
        "<section><h2>Fairness by group</h2>"
        + image(fairness_figure(batches), "rate per group per batch")
        + "<p>The champion's decisions on each labelled batch, by group of each sensitive "
        "column; groups too small to judge are left out.</p>" + body + "</section>"
    )


def decisions_section(decisions: list[dict[str, Any]], metric: str) -> str:
    if not decisions:
        return empty("No model version registered yet: `perennial train` makes one.")
    rows = []
    for d in decisions:
        compared = d["compared_with"]
        champion = number(d["champion_value"]) + ("" if compared == "none" else f" (v{compared})")
        cells = [
            td(f"v{d['version']}"),
            td(d["holdout"]),
            td(d["decision"], d["decision"]),
            td(number(d["challenger_value"]), "n"),
            td(champion, "n"),
            td("; ".join(d["reasons"])),
        ]
        rows.append((cells, ""))
    title = METRICS[metric].title
    head = ["version", "holdout", "decision", f"its {title}", f"champion {title}", "reasons"]
    figure = decisions_figure(decisions, title)
    return image(figure, "challenger vs champion") + table(head, rows)


def quarantines_section(quarantines: list[dict[str, Any]]) -> str:
    if not quarantines:
        return empty("No batch quarantined: every batch passed the gate.")
    rows = [
        (
            [
                td(q["batch"]),
                td(q["revision"], "n"),
                td(q["stage"]),
                td(q["message"]),
                td("; ".join(q["rules"])),
            ],
            "",
        )
        for q in quarantines
    ]
    return table(["batch", "revision", "stage", "why", "failed rules"], rows)


def costs_section(costs: list[dict[str, Any]], prices_as_of: str) -> str:
    if not costs:
        return empty("No training run has recorded its cost yet.")
    rows = [
        (
            [
                td(run_name(c)),
                td(number(c.get("wall_seconds"), 1), "n"),
                td(number(c.get("cpu_seconds"), 1), "n"),
                td(number(c.get("peak_rss_mb"), 0), "n"),
                td(f"${c.get('usd', 0.0):.6f}", "n"),
            ],
            "",
        )
        for c in costs
    ]
    note = f"<p>Estimated at the prices of {escape(prices_as_of)}.</p>"
    head = ["run", "wall s", "CPU s", "peak MB", "estimated USD"]
    return image(cost_figure(costs), "cost per run") + note + table(head, rows)


def replay_section(replay: dict[str, Any] | None) -> str:
    """The replay's figure and its table (mean realized metric, retrains, promotions, alerts)."""
    figure = replay_figure(replay) if replay else None
    if not replay or not figure:
        return empty("No replay yet: `perennial replay --batches FIRST..LAST` fills this in.")
    title = METRICS[replay.get("metric", "roc_auc")].title
    rows = []
    for name, summary in replay["policies"].items():
        low, high = summary.get("interval") or [None, None]
        mean = summary.get("mean_realized", summary.get("mean_realized_auc"))
        cells = [
            td(name),
            td(number(mean)),
            td(f"[{number(low)}, {number(high)}]"),
            *(td(f"{summary.get(k, 0):g}") for k in ("retrains", "promotions", "alerts")),
        ]
        rows.append((cells, ""))
    head = [
        "policy",
        f"mean realized {title}",
        "interval over seeds",
        "retrains",
        "promotions",
        "alerts",
    ]
    return image(figure, f"realized {title} per policy") + table(head, rows)


def tiles(data: dict[str, Any]) -> str:
    batches, decisions = data["batches"], data["decisions"]
    last = batches[-1] if batches else {}
    moves = data["moves"]
    champion = moves[-1]["to"] if moves else last.get("model_version")
    promoted = sum(d["decision"] == "promoted" for d in decisions)
    metric = data.get("metric", "roc_auc")
    title = METRICS[metric].title
    real = (last.get("labelled") or {}).get(metric)
    shown = [
        ("champion", f"v{champion}" if champion else "none"),
        (f"{title} on {last.get('batch', '-')}", number(real)),
        (f"{title} estimated", number(estimated_value(last.get("estimated") or {}))),
        ("batches monitored", str(len(batches))),
        ("promoted / decisions", f"{promoted} / {len(decisions)}"),
        ("quarantined", str(len(data["quarantines"]))),
        ("cost of all runs", f"${sum(c.get('usd', 0.0) for c in data['costs']):.4f}"),
    ]
    return "".join(
        f'<div class="tile"><span>{escape(k)}</span><b>{escape(v)}</b></div>' for k, v in shown
    )


def render_page(data: dict[str, Any]) -> str:
    warn, alert = data["psi_warn"], data["psi_alert"]
    drift = drift_figure(data["batches"], warn, alert)
    return PAGE.substitute(
        style=STYLE,
        model=escape(data["model"]),
        dataset=escape(data["dataset"]),
        generated=escape(data["generated_at"]),
        tiles=tiles(data),
        metrics=batches_section(data["batches"], data.get("metric", "roc_auc")),
        fairness=fairness_section(data["batches"]),
        decisions=decisions_section(data["decisions"], data.get("metric", "roc_auc")),
        drift=image(drift, "PSI heat map") if drift else empty("No monitored batch yet."),
        replay=replay_section(data.get("replay")),
        quarantines=quarantines_section(data["quarantines"]),
        costs=costs_section(data["costs"], data["prices_as_of"]),
    )
