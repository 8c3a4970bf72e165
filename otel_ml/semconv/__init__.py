"""Semantic conventions of otel-ml: event names, attribute keys, metric names and units.

The single source of truth used by the instrumentation SDK, the processor, the dashboards and the alert rules.
Nothing here has behaviour beyond describing names; nothing imports from the rest of ``otel_ml``.
"""

from otel_ml.semconv import attributes, events, metrics, prometheus
from otel_ml.semconv.attributes import ATTRIBUTES, DropReason, Outcome, QualityMetric, RejectReason, Task
from otel_ml.semconv.events import EVENT_SCHEMA_VERSION, ML_EVENT_NAMES, ML_LABEL_EVENT, ML_PREDICTION_EVENT
from otel_ml.semconv.metrics import METRICS, MetricSpec
from otel_ml.semconv.prometheus import label_name, prom_name

__all__ = [
    "ATTRIBUTES",
    "EVENT_SCHEMA_VERSION",
    "METRICS",
    "ML_EVENT_NAMES",
    "ML_LABEL_EVENT",
    "ML_PREDICTION_EVENT",
    "DropReason",
    "MetricSpec",
    "Outcome",
    "QualityMetric",
    "RejectReason",
    "Task",
    "attributes",
    "events",
    "label_name",
    "metrics",
    "prom_name",
    "prometheus",
]
