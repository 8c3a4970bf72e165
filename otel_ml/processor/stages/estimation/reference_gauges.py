"""What the alert rules need from the reference, as gauges: baselines' variability and the reference's shares.

Per tick and (model, traffic version) with a reference:

* ``ml.reference.metric_sd`` (per metric): the per-row standard deviation of each baseline recorded by ``otel-ml
  reference fit`` (``variability.json``); for references fitted before it was recorded, proportions (accuracy,
  exact match) get ``sqrt(p (1 - p))`` and MRR that as an upper bound (:func:`~otel_ml.reference.variability.
  fallback_variability`);
* ``ml.reference.rows``: the evaluation set's rows;
* ``ml.reference.feature.bin_share`` (per feature and bin), ``ml.reference.prediction.bin_share`` and
  ``ml.reference.set_size.bin_share`` (per bin): the evaluation set's share per reference bin, smoothed like
  :func:`otel_ml.drift.methods.psi` (``(count + 0.5) / (rows + 0.5 * bins)``), so that PromQL computes the PSI of any
  window's ``ml.*.bin.observations`` against them;
* ``ml.reference.weak_segment.share`` (per weak slice): the slice's share of the evaluation set.

The points depend on the artifact only: computed once per artifact (:func:`reference_points`) and set every tick.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping

import numpy as np

from otel_ml.drift.distribution import Distribution
from otel_ml.drift.methods import SMOOTHING
from otel_ml.processor.stage import MetricSink
from otel_ml.reference.artifact import ReferenceArtifact
from otel_ml.reference.fit import AT_K, SET_SIZE
from otel_ml.reference.variability import fallback_variability
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.metrics import MetricSpec

Point = tuple[MetricSpec, float, tuple[tuple[str, str], ...]]


def smoothed_shares(dist: Distribution) -> np.ndarray:
    """Reference share per bin of ``dist``, with :data:`~otel_ml.drift.methods.SMOOTHING` added to every count."""
    counts = np.asarray(dist.counts, dtype=float) + SMOOTHING
    return np.asarray(counts / counts.sum())


_CACHE: dict[int, tuple[weakref.ref[ReferenceArtifact], tuple[Point, ...]]] = {}
"""Points per loaded artifact object (by identity; entries of artifacts no longer referenced are pruned)."""


def reference_points(art: ReferenceArtifact) -> tuple[Point, ...]:
    """Every gauge point of ``art`` (without the model and version attributes), computed once per artifact."""
    entry = _CACHE.get(id(art))
    if entry is not None and entry[0]() is art:
        return entry[1]
    for key in [k for k, (ref, _) in _CACHE.items() if ref() is None]:
        del _CACHE[key]
    points = _points(art)
    _CACHE[id(art)] = (weakref.ref(art), points)
    return points


def _points(art: ReferenceArtifact) -> tuple[Point, ...]:
    out: list[Point] = []
    for metric, sd in {**fallback_variability(art.metrics), **art.variability}.items():
        if math.isfinite(sd):
            name, _, k = metric.partition(AT_K)
            out.append((m.REFERENCE_METRIC_SD, float(sd),
                        ((a.ML_METRIC, name), *(((a.ML_RANKING_K, k),) if k else ()))))
    rows = art.metrics.get("rows")
    if isinstance(rows, int | float) and rows > 0:
        out.append((m.REFERENCE_ROWS, float(rows), ()))
    for name, dist in sorted(art.feature_distributions.items()):
        for label, share in zip(dist.labels, smoothed_shares(dist), strict=True):
            out.append((m.REFERENCE_FEATURE_BIN_SHARE, float(share), ((a.ML_FEATURE_NAME, name), (a.ML_BIN, label))))
    shared = (("prediction", m.REFERENCE_PREDICTION_BIN_SHARE), (SET_SIZE, m.REFERENCE_SET_SIZE_BIN_SHARE))
    for key_name, spec in shared:
        other = art.distribution(key_name)
        if other is not None:
            for label, share in zip(other.labels, smoothed_shares(other), strict=True):
                out.append((spec, float(share), ((a.ML_BIN, label),)))
    if isinstance(rows, int | float) and rows > 0:
        for weak in art.weak_segments:
            out.append((m.REFERENCE_WEAK_SEGMENT_SHARE, weak.support / float(rows), ((a.ML_WEAK_SEGMENT, weak.name),)))
    return tuple(out)


def reference_gauges(art: ReferenceArtifact, attrs: Mapping[str, str], sink: MetricSink) -> None:
    """Sets the reference's gauge points for the model and version in ``attrs``."""
    for spec, value, extra in reference_points(art):
        sink.set_gauge(spec, value, {**attrs, **dict(extra)})
