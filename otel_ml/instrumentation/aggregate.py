"""In-process aggregation of the ``ml.client.*`` metrics, exported as OTLP with cumulative temporality.

Owned by the background worker (no lock), except the drop counters, which the caller side increments under a lock
(dropping is the rare path). Attribute keys and metric names come from :mod:`otel_ml.semconv`.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np

from otel_ml.instrumentation import limits as lim
from otel_ml.instrumentation import wire_metrics as wm
from otel_ml.instrumentation.limits import TruncationReason
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m

ModelKey = tuple[str, str]


class _Histogram:
    __slots__ = ("bounds", "count", "counts", "max", "min", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.count = 0
        self.sum = 0.0
        self.min = float("inf")
        self.max = float("-inf")

    def record_many(self, values: list[float]) -> None:
        arr = np.asarray(values, dtype=np.float64)
        counts = np.bincount(np.searchsorted(self.bounds, arr, side="left"), minlength=len(self.counts))
        self.counts = [c + int(n) for c, n in zip(self.counts, counts.tolist(), strict=True)]
        self.count += len(values)
        self.sum += float(arr.sum())
        self.min = min(self.min, float(arr.min()))
        self.max = max(self.max, float(arr.max()))

    def record(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


def _by_model(pending: list[tuple[ModelKey, float]]) -> dict[ModelKey, list[float]]:
    by_model: defaultdict[ModelKey, list[float]] = defaultdict(list)
    for model, value in pending:
        by_model[model].append(value)
    return by_model


class Aggregator:
    """Cumulative client metrics of every model in this process."""

    def __init__(self) -> None:
        self.start_ns = time.time_ns()
        self.duration: dict[tuple[ModelKey, str | None], _Histogram] = {}
        self.predictions: defaultdict[tuple[ModelKey, str | None], int] = defaultdict(int)
        self.classes: defaultdict[ModelKey, set[str]] = defaultdict(set)
        self.score: dict[ModelKey, _Histogram] = {}
        self.errors: defaultdict[tuple[ModelKey, str], int] = defaultdict(int)
        self.exported: defaultdict[str, int] = defaultdict(int)
        self.dropped: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.truncated: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.drop_lock = threading.Lock()
        self._scores: list[tuple[ModelKey, float]] = []
        self._durations: list[tuple[ModelKey, float]] = []

    def record_duration(self, model: ModelKey, seconds: float, error_type: str | None = None) -> None:
        """One instrumented call's wall time (successful calls are folded in bulk, like scores)."""
        if error_type is None:
            self._durations.append((model, seconds))
            return
        h = self.duration.get((model, error_type))
        if h is None:
            h = self.duration[(model, error_type)] = _Histogram(m.DURATION_BUCKETS_S)
        h.record(seconds)

    def record_prediction(self, model: ModelKey, cls: str | None, score: float | None) -> None:
        """One prediction (class capped per model)."""
        predictions = self.predictions
        key = (model, cls)
        if key in predictions:  # the common case: a class seen before
            predictions[key] += 1
        else:
            if cls is not None:
                seen = self.classes[model]
                if len(seen) >= lim.MAX_METRIC_CLASSES:
                    self.truncated[(model[0], TruncationReason.CLASS_OVERFLOW)] += 1
                    key = (model, a.OVERFLOW_VALUE)
                else:
                    seen.add(cls)
            predictions[key] += 1
        if score is not None:
            self._scores.append((model, score))  # folded into the histograms in bulk (fold_scores)

    def record_predictions(self, model: ModelKey, class_counts: dict[str, int], scores: Any) -> None:
        """Many predictions at once (a vectorized batch): ``class_counts`` by predicted class, ``scores`` an array
        of finite floats. Same result as :meth:`record_prediction` per row (the class cap counts one overflow per
        row)."""
        for cls, count in class_counts.items():
            key = (model, cls)
            if key not in self.predictions:
                seen = self.classes[model]
                if len(seen) >= lim.MAX_METRIC_CLASSES:
                    self.truncated[(model[0], TruncationReason.CLASS_OVERFLOW)] += count
                    key = (model, a.OVERFLOW_VALUE)
                else:
                    seen.add(cls)
            self.predictions[key] += count
        if len(scores):
            h = self.score.get(model)
            if h is None:
                h = self.score[model] = _Histogram(m.SCORE_BUCKETS)
            h.record_many(scores)

    def fold_scores(self) -> None:
        """Add the pending scores and durations to their histograms, vectorized (called per export batch and at
        export)."""
        if self._durations:
            pending, self._durations = self._durations, []
            for model, values in _by_model(pending).items():
                h = self.duration.get((model, None))
                if h is None:
                    h = self.duration[(model, None)] = _Histogram(m.DURATION_BUCKETS_S)
                h.record_many(values)
        if self._scores:
            pending, self._scores = self._scores, []
            for model, values in _by_model(pending).items():
                h = self.score.get(model)
                if h is None:
                    h = self.score[model] = _Histogram(m.SCORE_BUCKETS)
                h.record_many(values)

    def record_error(self, model: ModelKey, error_type: str) -> None:
        """One instrumented call that raised."""
        self.errors[(model, error_type)] += 1

    def record_drop(self, model_name: str, reason: str, n: int = 1) -> None:
        """Events dropped (thread-safe: called from the caller side too)."""
        with self.drop_lock:
            self.dropped[(model_name, reason)] += n

    def add_truncated(self, counts: dict[tuple[str, str], int]) -> None:
        """Merge the normalizer's truncation counts."""
        for k, v in counts.items():
            self.truncated[k] += v
        counts.clear()

    def export_request(self, resource: dict[str, Any], scope_version: str, queue_size: int) -> bytes:
        """An encoded ``ExportMetricsServiceRequest`` of the current cumulative state."""
        from otel_ml.semconv.events import EVENT_SCHEMA_VERSION, INSTRUMENTATION_SCOPE, SCHEMA_VERSION_ATTRIBUTE

        self.fold_scores()
        now = time.time_ns()
        start = self.start_ns
        out: list[bytes] = []

        def model_attrs(model: ModelKey) -> list[tuple[str, Any]]:
            return [(a.ML_MODEL_NAME, model[0]), (a.ML_MODEL_VERSION, model[1])]

        def sum_metric(spec: m.MetricSpec, points: list[tuple[list[tuple[str, Any]], int]]) -> None:
            if points:
                out.append(wm.sum_metric(spec.name, spec.unit, spec.doc, points, start, now))

        def hist_metric(spec: m.MetricSpec, points: list[tuple[list[tuple[str, Any]], _Histogram]]) -> None:
            if points:
                out.append(wm.histogram_metric(spec.name, spec.unit, spec.doc, [
                    wm.histogram_point(attrs, start, now, h.count, h.sum, h.counts, h.bounds, h.min, h.max)
                    for attrs, h in points]))

        hist_metric(m.CLIENT_INFERENCE_DURATION,
                    [([*model_attrs(k), (a.ERROR_TYPE, e)], h) for (k, e), h in self.duration.items()])
        sum_metric(m.CLIENT_PREDICTIONS,
                   [([*model_attrs(k), (a.ML_CLASS, c)], v) for (k, c), v in self.predictions.items()])
        hist_metric(m.CLIENT_PREDICTION_SCORE, [(model_attrs(k), h) for k, h in self.score.items()])
        sum_metric(m.CLIENT_INFERENCE_ERRORS,
                   [([*model_attrs(k), (a.ERROR_TYPE, e)], v) for (k, e), v in self.errors.items()])
        sum_metric(m.CLIENT_EVENTS_EXPORTED, [([(a.ML_MODEL_NAME, n)], v) for n, v in self.exported.items()])
        with self.drop_lock:
            dropped = list(self.dropped.items())
        sum_metric(m.CLIENT_EVENTS_DROPPED,
                   [([(a.ML_MODEL_NAME, n), (a.ML_REASON, r)], v) for (n, r), v in dropped])
        sum_metric(m.CLIENT_VALUES_TRUNCATED,
                   [([(a.ML_MODEL_NAME, n), (a.ML_REASON, r)], v) for (n, r), v in self.truncated.items()])
        out.append(wm.gauge_metric(m.CLIENT_QUEUE_SIZE.name, m.CLIENT_QUEUE_SIZE.unit, m.CLIENT_QUEUE_SIZE.doc,
                                   [((), queue_size)], now))
        return wm.metrics_request(resource, INSTRUMENTATION_SCOPE, scope_version,
                                  {SCHEMA_VERSION_ATTRIBUTE: EVENT_SCHEMA_VERSION}, out)
