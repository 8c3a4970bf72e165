"""Prometheus names of otel-ml metrics and attributes.

Mirrors the collector ``prometheus`` exporter's default translation (``UnderscoreEscapingWithSuffixes``): dots and
other illegal characters become ``_``; UCUM units add a suffix (``s`` -> ``_seconds``; ``1`` -> ``_ratio`` on gauges
only; annotations in braces add nothing); monotonic counters get ``_total``; histograms expose ``_bucket``,
``_sum`` and ``_count``. Dashboards and alert rules take every series name from here; an integration test pins the
result against the real collector and Prometheus.
"""

from __future__ import annotations

import re

from otel_ml.semconv.metrics import METRICS, MetricSpec

_ILLEGAL = re.compile(r"[^a-zA-Z0-9_:]+")
_UNIT_SUFFIX = {"s": "seconds", "ms": "milliseconds", "By": "bytes", "%": "percent"}


def label_name(attribute_key: str) -> str:
    """Prometheus label name of an attribute key (``ml.model.name`` -> ``ml_model_name``)."""
    name = _ILLEGAL.sub("_", attribute_key)
    return f"key{name}" if name.startswith("_") else (f"key_{name}" if name[0].isdigit() else name)


def prom_name(metric: MetricSpec | str) -> str:
    """Prometheus metric family name (for histograms, the base of ``_bucket``/``_sum``/``_count``).

    >>> prom_name("ml.predictions")
    'ml_predictions_total'
    >>> prom_name("ml.label.delay")
    'ml_label_delay_seconds'
    >>> prom_name("ml.classification.roc_auc")
    'ml_classification_roc_auc_ratio'
    """
    spec = METRICS[metric] if isinstance(metric, str) else metric
    parts = [p for p in _ILLEGAL.sub("_", spec.name).split("_") if p]
    unit = spec.unit
    suffix = ""
    if unit and not unit.startswith("{"):
        if unit == "1":
            suffix = "ratio" if spec.instrument == "gauge" else ""
        else:
            suffix = _UNIT_SUFFIX.get(unit, _ILLEGAL.sub("_", unit))
    if suffix and parts[-1] != suffix:
        parts.append(suffix)
    if spec.instrument == "counter":
        parts.append("total")
    return "_".join(parts)


def series(metric: MetricSpec | str, kind: str = "") -> str:
    """Series name: ``series(LABEL_DELAY, "bucket")`` -> ``ml_label_delay_seconds_bucket``."""
    base = prom_name(metric)
    return f"{base}_{kind}" if kind else base


def all_series_names() -> set[str]:
    """Every Prometheus series name otel-ml can produce (used by the dashboard and rule checks)."""
    out: set[str] = set()
    for spec in METRICS.values():
        base = prom_name(spec)
        if spec.instrument == "histogram":
            out.update({f"{base}_bucket", f"{base}_sum", f"{base}_count"})
        else:
            out.add(base)
    return out
