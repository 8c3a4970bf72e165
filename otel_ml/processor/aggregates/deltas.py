"""The deltas of one processing step (:class:`Step`): capped attributes, counters, gauges and histogram
buckets, and the fold of a new point beyond ``metrics.series_limit``; not visible to exporters until committed.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from otel_ml.processor.aggregates.capper import Capper
from otel_ml.processor.aggregates.keys import _MODEL_SCOPE, CAPPED_KEYS, Attrs, Key
from otel_ml.processor.aggregates.mirror import Aggregates
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import OverflowReason
from otel_ml.semconv.metrics import MetricSpec


def _fold(attrs: Attrs) -> Attrs:
    """``attrs`` with every capped value (and the model name) replaced by ``_other``."""
    return tuple((k, a.OVERFLOW_VALUE if k in CAPPED_KEYS or k == a.ML_MODEL_NAME else v) for k, v in attrs)


class Step:
    """Deltas of one processing step (not visible to exporters until committed).

    Not thread-safe: owned by the writer thread.
    """

    def __init__(self, capper: Capper, aggregates: Aggregates | None = None) -> None:
        self.capper = capper
        self.deltas: dict[Key, float] = defaultdict(float)
        self.gauges: dict[Key, float] = {}
        self.now = capper.clock()
        capper.begin_step(self.now)
        self._attr_cache = capper.attr_cache
        self._aggregates = aggregates
        self._new_points: dict[str, int] = defaultdict(int)
        self.after_commit: list[Callable[[], None]] = []
        """Stage callbacks to run once this step's transaction committed (in-memory state that must follow the
        committed data); dropped when it rolls back."""

    def attrs(self, attributes: Mapping[str, str] | Iterable[tuple[str, str]]) -> Attrs:
        """Capped, sorted attribute tuple; counts overflows."""
        items = tuple(attributes.items()) if isinstance(attributes, Mapping) else tuple(attributes)
        cached = self._attr_cache.get(items)
        if cached is not None:
            return cached
        d = {k: sys.intern(str(v)) for k, v in items if v is not None}
        model = d.get(a.ML_MODEL_NAME)
        admit, now = self.capper.admit, self.now
        if model is not None:
            reason = admit(_MODEL_SCOPE, a.ML_MODEL_NAME, model, now)
            if reason is not None:
                self._overflow(a.OVERFLOW_VALUE, a.ML_MODEL_NAME, reason)
                d[a.ML_MODEL_NAME] = model = a.OVERFLOW_VALUE
        for k in CAPPED_KEYS.intersection(d):
            reason = admit(model or _MODEL_SCOPE, k, d[k], now)
            if reason is not None:
                self._overflow(model or _MODEL_SCOPE, k, reason)
                d[k] = a.OVERFLOW_VALUE
        out = tuple(sorted(d.items()))
        if out == tuple(sorted(items)):  # nothing overflowed: safe to reuse for identical input
            self._attr_cache.put(items, out)
        return out

    def _overflow(self, model: str, key: str, reason: str) -> None:
        self.deltas[(m.PROCESSOR_ATTRIBUTE_OVERFLOW.name,
                     ((a.ML_ATTRIBUTE_KEY, key), (a.ML_MODEL_NAME, model), (a.ML_REASON, reason)))] += 1

    def _point(self, name: str, attrs: Attrs) -> Attrs:
        """``attrs``, or its folded form when ``name`` already has ``series_limit`` points (counted)."""
        agg = self._aggregates
        if agg is None or (name, attrs) in self.deltas or agg.has(name, attrs):
            return attrs
        if agg.points(name) + self._new_points[name] < self.capper.series_limit:
            self._new_points[name] += 1
            return attrs
        folded = _fold(attrs)
        if folded != attrs:
            self._overflow(dict(attrs).get(a.ML_MODEL_NAME, _MODEL_SCOPE), name, OverflowReason.SERIES)
        return folded

    def add(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Add to a counter / up-down counter."""
        if metric.instrument not in ("counter", "updowncounter"):
            raise ValueError(f"{metric.name} is a {metric.instrument}, not a counter")
        if value != value:  # NaN never enters a cumulative sum
            return
        self.add_raw(metric.name, self.attrs(attributes), value)

    def add_raw(self, name: str, attrs: Attrs, value: float) -> None:
        """Add to an already capped key (hot path)."""
        key = (name, attrs)
        deltas = self.deltas
        if key not in deltas and attrs:
            key = (name, self._point(name, attrs))
        deltas[key] += value

    def set_gauge(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Set a gauge (NaN removes the point); a new point beyond ``series_limit`` is dropped (counted)."""
        if metric.instrument != "gauge":
            raise ValueError(f"{metric.name} is a {metric.instrument}, not a gauge")
        attrs = self.attrs(attributes)
        agg = self._aggregates
        key = (metric.name, attrs)
        if agg is not None and key not in self.gauges and not agg.has_gauge(metric.name, attrs) and value == value:
            if agg.gauge_points(metric.name) + self._new_points[key[0]] >= self.capper.series_limit:
                self._overflow(dict(attrs).get(a.ML_MODEL_NAME, _MODEL_SCOPE), metric.name, OverflowReason.SERIES)
                return
            self._new_points[key[0]] += 1
        self.gauges[key] = float(value)

    def record(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Record one histogram value."""
        self.record_many(metric, np.asarray([value], dtype=np.float64), self.attrs(attributes))

    def record_many(self, metric: MetricSpec, values: np.ndarray, attrs: Attrs) -> None:
        """Record many values of one histogram point (bucketed with numpy; NaN dropped)."""
        if metric.instrument != "histogram":
            raise ValueError(f"{metric.name} is a {metric.instrument}, not a histogram")
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        name = metric.name
        count = f"{name}|count"
        if attrs and (count, attrs) not in self.deltas:
            attrs = self._point(count, attrs)
        idx = np.searchsorted(np.asarray(metric.buckets), values, side="left")
        counts = np.bincount(idx, minlength=len(metric.buckets) + 1)
        d = self.deltas
        for i in np.flatnonzero(counts):
            d[(f"{name}|b{i}", attrs)] += float(counts[i])
        d[(f"{name}|sum", attrs)] += float(values.sum())
        d[(count, attrs)] += float(values.size)

    def merge(self, other: Step) -> None:
        """Fold another step's deltas and gauges into this one."""
        for k, v in other.deltas.items():
            self.deltas[k] += v
        self.gauges.update(other.gauges)
