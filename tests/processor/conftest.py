"""Shared builders for processor tests: event rows and OTLP requests."""

from __future__ import annotations

from typing import Any

from otel_ml.processor.records import Row, join_key
from otel_ml.semconv import attributes as a
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT
from tests.support import otlp_events as ev


def pred_row(pid: str, now: float, model: str = "m", cls: str = "1", task: str = "binary", segment: str = "",
             label: str | None = None) -> Row:
    """A prediction row as the decoder builds it (optionally a pair)."""
    half = (label, None, None, None, now) if label is not None else (None, None, None, None, None)
    return (join_key(model, pid), now, model, "v1", task, segment, cls, None, 0.5, "1", None, now, *half)


def label_row(pid: str, now: float, model: str = "m", value: str = "1") -> Row:
    """A label row as the decoder builds it."""
    return (join_key(model, pid), now, model, None, None, None, None, None, None, None, None, None,
            value, None, None, None, now)


def prediction_event(pid: str, model: str = "m", task: str = "binary", value: Any = "1", **extra: Any) -> Any:
    """An ``ml.prediction`` log record."""
    attrs: dict[str, Any] = {a.ML_MODEL_NAME: model, a.ML_PREDICTION_ID: pid, a.ML_TASK: task}
    if task in ("multilabel", "ranking"):
        attrs[a.ML_PREDICTION_VALUES] = value
    else:
        attrs[a.ML_PREDICTION_VALUE] = value
    attrs.update(extra)
    return ev.log_record(ML_PREDICTION_EVENT, attrs, 1_700_000_000_000_000_000)


def label_event(pid: str, model: str = "m", value: Any = "1", **extra: Any) -> Any:
    """An ``ml.label`` log record."""
    attrs: dict[str, Any] = {a.ML_MODEL_NAME: model, a.ML_PREDICTION_ID: pid}
    attrs[a.ML_LABEL_VALUES if isinstance(value, list) else a.ML_LABEL_VALUE] = value
    attrs.update(extra)
    return ev.log_record(ML_LABEL_EVENT, attrs, 1_700_000_060_000_000_000)
