"""Evaluation-set analysis for people: a text table and a plot (PNG, and an HTML page embedding both)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from otel_ml.estimation.orientation import Orientation
from otel_ml.reference.artifact import ReferenceArtifact
from otel_ml.semconv.attributes import Task


def _num(x: Any) -> str:
    if isinstance(x, int | float):
        if isinstance(x, float) and not math.isfinite(x):
            return "n/a"
        return f"{x:.4g}" if isinstance(x, float) else str(x)
    return str(x)


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_num(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


def render_text(art: ReferenceArtifact) -> str:
    """The whole analysis as plain text (what ``otel-ml reference report`` prints)."""
    parts = [
        f"Reference of model {art.model!r} version {art.version or '(any)'}: task {art.task}, "
        f"{int(art.metrics.get('rows', 0))} rows, created {art.created}",
        "",
        "Evaluation-set metrics (baselines)",
        _table(["metric", "value"], [[k, v] for k, v in sorted(art.metrics.items()) if k != "rows"]),
    ]
    if art.classes:
        parts += ["", f"Classes ({len(art.classes)}): " + ", ".join(art.classes[:50])]
    orientation = art.schema.get("orientation")
    if isinstance(orientation, dict):
        parts += ["", "Score orientation (checked at fit: a reference read the wrong way round is refused)",
                  "  " + Orientation.from_json(orientation).describe()]
    elif art.task == Task.BINARY and art.schema.get("scores"):
        parts += ["", f"Score orientation: {art.schema['scores'][-1]!r} read as P({art.classes[-1]!r}) "
                      "(not checked: artifact fitted before orientation checks; refit to check it)"]
    est = art.estimator
    if est is not None:
        parts += ["", f"Correctness estimator: {est.estimator_key}"]
        cv = getattr(est, "cv_scores_", None)
        if cv:
            parts.append(_table(["candidate", "cv accuracy MAE"], [[k, v] for k, v in sorted(cv.items())]))
            z = getattr(est, "loglik_z_", float("nan"))
            if math.isfinite(z):
                parts.append(f"held-out log-loss gain of learned over cbpe: z = {z:.1f} (learned chosen below -2)")
            for key, cz in sorted(getattr(est, "chunk_z_", {}).items()):
                parts.append(f"simulated-chunk error gain of {key} over cbpe: z = {cz:.1f} (chosen below -2 when "
                             "better on random and shifted chunks)")
        parts.append(_table(["metric", "error margin"], [[k, v] for k, v in sorted(est.error_margin_.items())]))
        support = getattr(est, "support_", None)
        parts.append("novelty: " + (
            f"{support.prototypes.shape[0]} prototypes over {support.prototypes.shape[1]} encoded feature columns; "
            "predictions farther from them than every held-out reference row have unknown correctness"
            if support is not None else "not measured (no features, fewer than 50 rows, or an older artifact)"))
    parts += ["", "Weak segments (quality significantly below overall, 95 % interval)"]
    if art.weak_segments:
        parts.append(_table(
            ["slice", "support", "metric", "value", "lower", "upper", "overall"],
            [[w.name, w.support, w.metric, w.value, w.lower, w.upper, w.overall] for w in art.weak_segments]))
    else:
        parts.append("(none)")
    feats = art.feature_distributions
    if feats:
        parts += ["", "Feature reference distributions",
                  _table(["feature", "kind", "bins", "missing"],
                         [[n, d.kind, len(d.labels), int(d.counts[-1])] for n, d in sorted(feats.items())])]
    if art.calibration:
        cal = art.calibration
        parts += ["", f"Quality by {cal['variable']} bin ({cal['metric']})",
                  _table(["bin", f"mean {cal['variable']}", cal["metric"], "rows"],
                         [list(r) for r in zip(cal["labels"], cal["mean"], cal["quality"], cal["count"],
                                               strict=True)])]
    size = art.distribution("set_size")
    if size is not None:
        parts += ["", "Predictions per sample",
                  _table(["bin", "share"], [[lab, c / max(size.total, 1)] for lab, c in zip(size.labels, size.counts,
                                                                                           strict=True) if c])]
    return "\n".join(parts)


def render_png(art: ReferenceArtifact) -> bytes:
    """A figure: metrics, weak segments with intervals against the overall level, and the score or
    predictions-per-sample distribution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    metrics = {k: v for k, v in sorted(art.metrics.items()) if k != "rows" and math.isfinite(v)}
    axes[0].barh(list(metrics), list(metrics.values()), color="#4c72b0")
    axes[0].set_title(f"{art.model} {art.version or ''} evaluation-set metrics")
    weak = art.weak_segments[:12]
    if weak:
        names = [w.name for w in weak][::-1]
        values = [w.value for w in weak][::-1]
        err = [[w.value - w.lower for w in weak][::-1], [w.upper - w.value for w in weak][::-1]]
        axes[1].errorbar(values, names, xerr=err, fmt="o", color="#c44e52", capsize=3)
        axes[1].axvline(weak[0].overall, color="gray", linestyle="--", label="overall")
        axes[1].legend(loc="lower right")
        axes[1].set_title(f"weak segments ({weak[0].metric}, 95 % interval)")
    else:
        axes[1].text(0.5, 0.5, "no weak segment", ha="center", va="center")
        axes[1].set_axis_off()
    cal = art.calibration
    dist = art.distribution("set_size") or art.distribution("prediction")
    if cal and cal.get("variable") == "confidence":
        axes[2].plot([0, 1], [0, 1], color="gray", linestyle="--", label="perfectly calibrated")
        axes[2].plot(cal["mean"], cal["quality"], "o-", color="#55a868", label="evaluation set")
        axes[2].set_xlabel("confidence of the predicted class (bin mean)")
        axes[2].set_ylabel("accuracy")
        axes[2].legend(loc="upper left")
        axes[2].set_title("score calibration (reliability)")
    elif cal:
        axes[2].plot(cal["mean"], cal["quality"], "o-", color="#55a868")
        axes[2].set_xlabel("prediction (bin mean)")
        axes[2].set_ylabel(cal["metric"])
        axes[2].set_title(f"{cal['metric']} by predicted value")
    elif dist is not None:
        total = max(dist.total, 1.0)
        axes[2].bar(range(len(dist.labels)), [c / total for c in dist.counts], color="#55a868")
        axes[2].set_xticks(range(len(dist.labels)), dist.labels, rotation=60, ha="right", fontsize=7)
        axes[2].set_title(f"{dist.name} distribution (share)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_report(art: ReferenceArtifact, out_dir: str | Path) -> tuple[Path, Path]:
    """Writes ``report.png`` and ``report.html`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = render_png(art)
    png_path = out / "report.png"
    png_path.write_bytes(png)
    html_path = out / "report.html"
    html_path.write_text(
        "<!doctype html><meta charset='utf-8'>"
        f"<title>otel-ml reference {html.escape(art.model)}</title>"
        f"<h1>Reference of {html.escape(art.model)} {html.escape(art.version)}</h1>"
        f"<img alt='reference analysis' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"
        f"<pre>{html.escape(render_text(art))}</pre>\n")
    return png_path, html_path
