"""``ml.weak_segment.predictions``: how many predictions of a batch fall in each weak slice of the reference.

A weak slice is a segment value, a feature bin or (multilabel/ranking) a set-size bin where the model did worse on
the evaluation set (:mod:`otel_ml.reference.weak_segments`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from otel_ml.drift.distribution import Distribution
from otel_ml.processor.stage import MetricSink, PredictionBatch
from otel_ml.reference.artifact import ReferenceArtifact
from otel_ml.reference.fit import SET_SIZE
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m


def weak_segment_counters(batch: PredictionBatch, art: ReferenceArtifact, attrs: Mapping[str, str],
                          sink: MetricSink) -> None:
    """Adds, per weak slice of ``art`` that rows of ``batch`` fall in, how many do."""
    if not art.weak_segments:
        return
    n = len(batch)
    parsed: list[dict[str, str]] | None = None
    for weak in art.weak_segments:
        hit: np.ndarray | None = None
        if weak.kind == "segment":
            if parsed is None:
                parsed = [_parse_segment(s) for s in batch.segments] if batch.segments else [{}] * n
            hit = np.asarray([d.get(weak.column) == weak.bin for d in parsed], dtype=bool)
        elif weak.kind == "feature":
            dist = art.feature_distributions.get(weak.column)
            values = batch.features.get(weak.column)
            if dist is not None and values is not None:
                hit = _in_bin(dist, values, weak.bin)
        elif weak.kind == SET_SIZE and batch.value_lists is not None:
            dist = art.distribution(SET_SIZE)
            if dist is not None:
                hit = _in_bin(dist, [float(len(s)) for s in batch.value_lists], weak.bin)
        if hit is not None and hit.any():
            sink.add(m.WEAK_SEGMENT_PREDICTIONS, float(hit.sum()), {**attrs, a.ML_WEAK_SEGMENT: weak.name})


def _parse_segment(segment: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in segment.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def _in_bin(dist: Distribution, values: Any, label: str) -> np.ndarray:
    labels = dist.labels
    if label not in labels:
        return np.zeros(len(values), dtype=bool)
    return np.asarray(dist.bin_indices(values) == labels.index(label))
