"""What the caller side queues for the background worker: one typed record per recording call.

A record holds raw references to what the caller handed over (values, arrays, call arguments and results); the
worker turns it into events (:mod:`~otel_ml.instrumentation.convert`). Records are :class:`~typing.NamedTuple`
classes: fields by name everywhere, and the cheapest object Python can build on the request path. Hot paths build
them with ``tuple.__new__(Kind, (...))`` (:data:`new_record`), which skips the Python-level ``__new__`` of a named
tuple (about 0.25 µs per call on this project's machines, a fifth of ``log_prediction``'s caller cost).

| record | made by | events |
|---|---|---|
| :class:`PredictionRecord` | ``monitor.log_prediction`` / ``log_pair`` | 1 |
| :class:`PredictionBatchRecord` | ``monitor.log_predictions`` | one per id |
| :class:`CallRecord` | a ``monitor.instrument``-ed call that returned | 1, or one per id (a batch result) |
| :class:`CallErrorRecord` | a ``monitor.instrument``-ed call that raised | 0 (metrics only) |
| :class:`LabelRecord` | ``monitor.log_label`` | 1 |
| :class:`LabelBatchRecord` | ``monitor.log_labels`` | one per id |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from otel_ml.instrumentation.spec import ModelSpec

if TYPE_CHECKING:
    from otel_ml.instrumentation.decorator import CallSpec

MISSING: Any = object()
"""Sentinel: no label given (``None`` is a value a caller may pass)."""

new_record = tuple.__new__
"""``new_record(Kind, (field, ...))``: a record without the named tuple's Python-level ``__new__`` (hot paths)."""


class PredictionRecord(NamedTuple):
    """One prediction (``log_prediction``)."""

    spec: ModelSpec
    time_ns: int
    prediction_id: Any
    prediction: Any
    scores: Any
    features: Any
    segments: Any
    label: Any
    """The ground truth of a pair, or :data:`MISSING`."""
    context: Any
    """The OpenTelemetry ``Context`` at the call (its span, if any, is linked to the event on the worker)."""
    duration_ns: int | None


class PredictionBatchRecord(NamedTuple):
    """A batch of predictions (``log_predictions``); one event per id."""

    spec: ModelSpec
    time_ns: int
    prediction_ids: Sequence[Any]
    predictions: Any
    scores: Any
    features: Any
    segments: Any
    labels: Any
    context: Any
    duration_ns: int | None


class CallRecord(NamedTuple):
    """A call of an instrumented function that returned (extraction runs on the worker)."""

    call: CallSpec
    time_ns: int
    ids: str | Sequence[str]
    """One id (a ``str``: a single prediction) or the ids of a batch result."""
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    result: Any
    context: Any
    duration_ns: int


class CallErrorRecord(NamedTuple):
    """A call of an instrumented function that raised (duration and ``error.type`` only)."""

    spec: ModelSpec
    duration_ns: int
    error_type: str


class LabelRecord(NamedTuple):
    """One label (``log_label``)."""

    spec: ModelSpec
    time_ns: int
    prediction_id: Any
    label: Any
    relevance: Any


class LabelBatchRecord(NamedTuple):
    """Labels of many predictions (``log_labels``); one event per id."""

    spec: ModelSpec
    time_ns: int
    prediction_ids: Sequence[Any]
    labels: Any


Record = PredictionRecord | PredictionBatchRecord | CallRecord | CallErrorRecord | LabelRecord | LabelBatchRecord
"""Any record kind."""


def spec_of(rec: Record) -> ModelSpec:
    """The spec of the monitor that made the record."""
    if isinstance(rec, CallRecord):
        return rec.call.spec
    return rec.spec


def events_of(rec: Record) -> int:
    """Events the record would produce (what dropping it counts)."""
    if isinstance(rec, (PredictionBatchRecord, LabelBatchRecord)):
        return len(rec.prediction_ids)
    if isinstance(rec, CallRecord):
        return 1 if isinstance(rec.ids, str) else len(rec.ids)
    return 0 if isinstance(rec, CallErrorRecord) else 1
