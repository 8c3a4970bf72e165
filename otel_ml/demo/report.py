"""The demo's static report: one HTML file with the key time series as embedded PNG plots (readable offline)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from otel_ml.demo import scenario
from otel_ml.demo.analysis import QUALITY_MIN_EFFECT, Analysis, _fmt
from otel_ml.demo.models import ROUTER, TAGGER
from otel_ml.demo.scenario import Schedule
from otel_ml.demo.timeline import QUALITY_WINDOW_DAYS, Series, Timeline

_COLORS = {"feature_drift": "tab:purple", "weak_segment": "tab:orange", "unseen_class": "tab:red",
           "set_size": "tab:brown"}


def _xy(values: Series) -> tuple[list[int], list[float]]:
    pts = [(d + 1, v) for d, v in enumerate(values) if v is not None]
    return [d for d, _ in pts], [v for _, v in pts]


def _mark_changes(ax: Axes, schedule: Schedule, days: int) -> None:
    for change in schedule.changes:
        ax.axvline(change.start_day(days) + 0.5, color=_COLORS.get(change.key, "grey"), linestyle=":", linewidth=1.2,
                   label=f"{change.key} starts")


def _png(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _quality_plot(timeline: Timeline, schedule: Schedule) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.6))
    est, half = timeline.estimated_accuracy(ROUTER)
    x, y = _xy(est)
    ax.plot(x, y, marker="o", ms=3, label="estimated accuracy (no labels)")
    band = [(d + 1, v, h) for d, (v, h) in enumerate(zip(est, half, strict=True)) if v is not None and h is not None]
    if band:
        ax.fill_between([d for d, _, _ in band], [v - h for _, v, h in band], [v + h for _, v, h in band], alpha=0.2)
    x, y = _xy(timeline.realized_accuracy(ROUTER))
    ax.plot(x, y, marker="s", ms=3, label="realized accuracy (late, partial labels)")
    baseline = timeline.baseline(ROUTER)
    if baseline is not None:
        ax.axhline(baseline, color="grey", label="evaluation-set baseline")
        ax.axhline(baseline - QUALITY_MIN_EFFECT, color="grey", linestyle="--", linewidth=0.8,
                   label="baseline - minimum effect of the alerts")
    _mark_changes(ax, schedule, timeline.days)
    ax.set(title=f"{ROUTER}: accuracy, {QUALITY_WINDOW_DAYS}-day windows", xlabel="day", ylabel="accuracy")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def _mix_plot(timeline: Timeline, schedule: Schedule) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for values, label in ((timeline.weak_share(), "share in weak region slices of the evaluation set"),
                          (timeline.unseen_share(), "share of unseen-class predictions"),
                          (timeline.label_coverage(), "label coverage (3-day window)")):
        x, y = _xy(values)
        ax.plot(x, y, marker="o", ms=3, label=label)
    _mark_changes(ax, schedule, timeline.days)
    ax.set(title=f"{ROUTER}: traffic mix and labels", xlabel="day", ylabel="share")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def _drift_plot(timeline: Timeline, schedule: Schedule) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    for feature in scenario.FEATURES:
        x, y = _xy(timeline.drift(feature))
        ax.plot(x, y, marker="o", ms=3, label=feature)
    _mark_changes(ax, schedule, timeline.days)
    methods = ", ".join(timeline.drift_methods()) or "n/a"
    ax.set(title=f"{ROUTER}: feature drift vs the evaluation set ({methods}; largest shown)", xlabel="day",
           ylabel="distance")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def _tagger_plot(timeline: Timeline, schedule: Schedule) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    x, y = _xy(timeline.tags_per_sample(TAGGER))
    ax.plot(x, y, marker="o", ms=3, color="tab:brown", label="tags predicted per labeled ticket")
    x, y = _xy(timeline.set_size_drift(TAGGER))
    ax.plot(x, y, marker="^", ms=3, color="tab:grey", label="tags-per-ticket drift vs evaluation set")
    ax.set(title=f"{TAGGER}: predictions per sample and precision", xlabel="day",
           ylabel="tags per ticket / drift distance")
    ax2 = ax.twinx()
    x, y = _xy(timeline.micro_precision(TAGGER))
    ax2.plot(x, y, marker="s", ms=3, color="tab:green", label="micro precision (realized)")
    ax2.set_ylabel("precision")
    _mark_changes(ax, schedule, timeline.days)
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, loc="upper left", bbox_to_anchor=(1.1, 1))
    return _png(fig)


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(path: Path, timeline: Timeline, schedule: Schedule, result: Analysis, source: str,
                 summary_text: str) -> Path:
    """Write the HTML report to ``path`` and return it."""
    findings = _table(
        [(str(f.injected_day + 1), f.what, "not detected" if f.detected_day is None else str(f.detected_day + 1),
          f.signal,
          f"{_fmt(f.before, f.unit)} -> {_fmt(f.after, f.unit)}", f.quality,
          f"{_fmt(f.estimated[0])} -> {_fmt(f.estimated[1])}", f"{_fmt(f.realized[0])} -> {_fmt(f.realized[1])}")
         for f in result.findings],
        ("injected (day)", "change", "detected (day)", "signal", "signal baseline -> end", "quality hurt",
         "estimated before -> after", "realized before -> after"))
    plots = [_quality_plot(timeline, schedule), _mix_plot(timeline, schedule), _drift_plot(timeline, schedule),
             _tagger_plot(timeline, schedule)]
    images = "\n".join(f'<img alt="plot" src="data:image/png;base64,{p}">' for p in plots)
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>otel-ml demo report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:0.85em}}td,th{{border:1px solid #ccc;padding:4px 6px;text-align:left}}
img{{display:block;margin:1em 0;max-width:100%}}pre{{background:#f6f6f6;padding:1em;font-size:0.8em}}</style>
</head><body>
<h1>otel-ml demo: {timeline.days} days of a support-ticket service</h1>
<p>Every number here was read back from otel-ml's metrics ({html.escape(source)}), computed by the otel-ml processor
from the <code>ml.prediction</code> and <code>ml.label</code> events the instrumented models sent. Dotted lines mark
the days the changes were injected.</p>
<h2>Findings</h2>
{findings}
<h2>Time series</h2>
{images}
<h2>Summary</h2>
<pre>{html.escape(summary_text)}</pre>
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    return path
