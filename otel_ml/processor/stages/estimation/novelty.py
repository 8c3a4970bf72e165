"""Novelty and drift of the traffic against its reference: counters per batch, gauges per tick.

Per batch: ``ml.unseen_class_predictions`` (classes or items the evaluation set never had, capped by the
processor's cardinality limit), ``ml.feature.bin.observations`` (per feature and reference bin),
``ml.prediction.bin.observations`` and ``ml.multilabel.set_size.bin.observations`` (per reference bin: additive, so
PromQL computes the drift of any window summed over replicas); the predictions, feature values and set sizes also go
into the drift windows of the :class:`~.artifacts.ModelRuntime` (the per-replica gauges, a fallback). Per tick:
``ml.feature.drift``, ``ml.prediction.drift`` and ``ml.multilabel.set_size_drift`` of those windows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from otel_ml.drift.detectors import WindowedDrift
from otel_ml.processor.stage import MetricSink, PredictionBatch
from otel_ml.processor.stages.estimation.artifacts import ModelRuntime
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Task
from otel_ml.semconv.metrics import MetricSpec


def _observe(drift: WindowedDrift | None, values: Iterable[Any], metric: MetricSpec, attrs: Mapping[str, str],
             sink: MetricSink) -> None:
    """Counts ``values`` per reference bin into ``metric`` now; adds them to the drift window once the step committed
    (a retried step must not add them twice)."""
    if drift is None:
        return
    counts = drift.reference.count(values)
    sink.after_commit(functools.partial(drift.add_counts, counts))  # the window changes once committed
    for label, count in zip(drift.reference.labels, counts, strict=True):
        if count > 0:
            sink.add(metric, float(count), {**attrs, a.ML_BIN: label})


def novelty_counters(batch: PredictionBatch, rt: ModelRuntime, attrs: Mapping[str, str],
                     sink: MetricSink) -> np.ndarray:
    """Unseen classes, prediction and set-size windows; returns which rows predicted an unseen class."""
    n = len(batch)
    unseen_rows = np.zeros(n, dtype=bool)
    if batch.task in Task.CLASSIFICATION and isinstance(batch.values, list):
        predicted: list[str] = batch.values
        if rt.unseen is not None:
            unseen_rows = np.asarray([rt.unseen.is_unseen(v) for v in predicted], dtype=bool)
            counts = rt.unseen.observe(predicted)
        else:
            counts = {}
        _observe(rt.prediction, predicted, m.PREDICTION_BIN_OBSERVATIONS, attrs, sink)
    elif batch.task in (Task.MULTILABEL, Task.RANKING) and batch.value_lists is not None:
        flat = [c for s in batch.value_lists for c in s]
        counts = rt.unseen.observe(flat) if rt.unseen is not None else {}
        if rt.unseen is not None:
            unseen_rows = np.asarray([any(rt.unseen.is_unseen(c) for c in s) for s in batch.value_lists])
        _observe(rt.prediction, flat, m.PREDICTION_BIN_OBSERVATIONS, attrs, sink)
        _observe(rt.set_size, [float(len(s)) for s in batch.value_lists], m.SET_SIZE_BIN_OBSERVATIONS, attrs, sink)
    else:
        counts = {}
        if isinstance(batch.values, np.ndarray):
            _observe(rt.prediction, batch.values, m.PREDICTION_BIN_OBSERVATIONS, attrs, sink)
    for cls, count in counts.items():
        sink.add(m.UNSEEN_CLASS_PREDICTIONS, float(count), {**attrs, a.ML_CLASS: cls})
    return unseen_rows


def feature_counters(batch: PredictionBatch, rt: ModelRuntime, attrs: Mapping[str, str],
                     sink: MetricSink) -> dict[str, np.ndarray]:
    """Per-bin feature counts (only features the batch carries) and missing reference features; returns
    out-of-reference rows per feature.

    ``ml.feature.missing`` counts, per reference feature, the predictions without a value for it among those that
    carry features at all (a prediction without any feature was sampled out by ``feature_sample_rate``, or its
    model sends none: not a missing value of one feature).
    """
    outside: dict[str, np.ndarray] = {}
    carrying = _carrying_features(batch)
    if rt.features and carrying.any():
        for name in rt.features:
            values = batch.features.get(name)
            lacking = carrying if values is None else carrying & _missing(values)
            count = int(lacking.sum())
            if count:
                sink.add(m.FEATURE_MISSING, float(count), {**attrs, a.ML_FEATURE_NAME: name})
    for name, drift in rt.features.items():
        values = batch.features.get(name)
        if values is None:
            continue
        _observe(drift, values, m.FEATURE_BIN_OBSERVATIONS, {**attrs, a.ML_FEATURE_NAME: name}, sink)
        outside[name] = drift.reference.outside(values)
    return outside


def _missing(values: list[object]) -> np.ndarray:
    """Rows whose value is absent (None) or a NaN."""
    return np.fromiter((v is None or (isinstance(v, float) and v != v) for v in values), dtype=bool,
                       count=len(values))


def _carrying_features(batch: PredictionBatch) -> np.ndarray:
    """Rows with at least one feature value (of any name)."""
    carrying = np.zeros(len(batch), dtype=bool)
    for values in batch.features.values():
        carrying |= ~_missing(values)
    return carrying


def drift_gauges(rt: ModelRuntime, attrs: Mapping[str, str], sink: MetricSink) -> None:
    """The drift of the runtime's windows against the reference, per method (no point below the minimum count)."""
    for name, drift in rt.features.items():
        for method, value in drift.scores().items():
            sink.set_gauge(m.FEATURE_DRIFT, value, {**attrs, a.ML_FEATURE_NAME: name, a.ML_DRIFT_METHOD: method})
    if rt.prediction is not None:
        for method, value in rt.prediction.scores().items():
            sink.set_gauge(m.PREDICTION_DRIFT, value, {**attrs, a.ML_DRIFT_METHOD: method})
    if rt.set_size is not None:
        for method, value in rt.set_size.scores().items():
            sink.set_gauge(m.SET_SIZE_DRIFT, value, {**attrs, a.ML_DRIFT_METHOD: method})
