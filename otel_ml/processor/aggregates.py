"""Cumulative metric aggregates: the committed in-memory mirror, per-step deltas, cardinality caps.

Every additive metric the processor exports (counters, up-down counters and the bucket counts of its histograms) is
a float keyed by ``(metric name, attributes)``. One processing step collects *deltas* in a :class:`Step`; the store
persists the new totals in the same transaction as the records and joins, and only after the commit are they applied
to the :class:`Aggregates` mirror the exporters read. A failed step is discarded as a whole.

Histograms are kept as cumulative bucket counts (``<name>|b<i>``, ``<name>|sum``, ``<name>|count`` pseudo-metrics),
so they are durable like the counters (the OTel SDK histogram costs ~16 µs per ``record``; bucketing a batch with
numpy costs well under 1 µs per value).
"""

from __future__ import annotations

import functools
import json
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np

from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.metrics import MetricSpec

Attrs = tuple[tuple[str, str], ...]
"""Attributes of one data point: sorted ``(key, value)`` pairs."""
Key = tuple[str, Attrs]

CAPPED_KEYS: Final = frozenset({a.ML_MODEL_VERSION, a.ML_SEGMENT, a.ML_CLASS, a.ML_FEATURE_NAME, a.ML_BIN,
                                a.ML_WEAK_SEGMENT})
"""Metric attributes whose values are capped per model (the others are bounded enums)."""
_MODEL_SCOPE: Final = ""
_ATTR_CACHE_SIZE: Final = 65536
"""Entries of the attribute caches (series of a step repeat from step to step; bounded all the same)."""


@functools.lru_cache(maxsize=_ATTR_CACHE_SIZE)
def encode_attrs(attrs: Attrs) -> str:
    """Stable text form of an attribute tuple (database key)."""
    return json.dumps(attrs, separators=(",", ":"))


def decode_attrs(text: str) -> Attrs:
    """Inverse of :func:`encode_attrs`."""
    return tuple((str(k), str(v)) for k, v in json.loads(text))


class Capper:
    """Per-model cardinality caps: the first ``limit`` values of a capped key pass, later ones become ``_other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.attr_cache: dict[tuple[tuple[str, str], ...], Attrs] = {}
        """:meth:`Step.attrs` results that capped nothing (admitted values stay admitted: valid for every step)."""

    def admit(self, model: str, key: str, value: str) -> bool:
        """Whether ``value`` may be used (registering it when there is room)."""
        seen = self._seen[(model, key)]
        if value in seen:
            return True
        if len(seen) >= self.limit:
            return False
        seen.add(value)
        return True

    def restore(self, keys: Iterable[Key]) -> None:
        """Re-register the values of persisted aggregates so caps stay stable across restarts."""
        for _, attrs in keys:
            d = dict(attrs)
            model = d.get(a.ML_MODEL_NAME, _MODEL_SCOPE)
            if a.ML_MODEL_NAME in d and d[a.ML_MODEL_NAME] != a.OVERFLOW_VALUE:
                self._seen[(_MODEL_SCOPE, a.ML_MODEL_NAME)].add(d[a.ML_MODEL_NAME])
            for k, v in attrs:
                if k in CAPPED_KEYS and v != a.OVERFLOW_VALUE:
                    self._seen[(model, k)].add(v)


class Step:
    """Deltas of one processing step (not visible to exporters until committed).

    Not thread-safe: owned by the writer thread.
    """

    def __init__(self, capper: Capper) -> None:
        self.capper = capper
        self.deltas: dict[Key, float] = defaultdict(float)
        self.gauges: dict[Key, float] = {}
        self._attr_cache = capper.attr_cache

    def attrs(self, attributes: Mapping[str, str] | Iterable[tuple[str, str]]) -> Attrs:
        """Capped, sorted attribute tuple; counts overflows."""
        items = tuple(attributes.items()) if isinstance(attributes, Mapping) else tuple(attributes)
        cached = self._attr_cache.get(items)
        if cached is not None:
            return cached
        d = {k: str(v) for k, v in items if v is not None}
        model = d.get(a.ML_MODEL_NAME)
        if model is not None and not self.capper.admit(_MODEL_SCOPE, a.ML_MODEL_NAME, model):
            self._overflow(a.OVERFLOW_VALUE, a.ML_MODEL_NAME)
            d[a.ML_MODEL_NAME] = model = a.OVERFLOW_VALUE
        for k in CAPPED_KEYS.intersection(d):
            if not self.capper.admit(model or _MODEL_SCOPE, k, d[k]):
                self._overflow(model or _MODEL_SCOPE, k)
                d[k] = a.OVERFLOW_VALUE
        out = tuple(sorted(d.items()))
        if out == tuple(sorted(items)):  # nothing overflowed: safe to reuse for identical input
            if len(self._attr_cache) >= _ATTR_CACHE_SIZE:
                self._attr_cache.clear()
            self._attr_cache[items] = out
        return out

    def _overflow(self, model: str, key: str) -> None:
        self.deltas[(m.PROCESSOR_ATTRIBUTE_OVERFLOW.name, ((a.ML_ATTRIBUTE_KEY, key), (a.ML_MODEL_NAME, model)))] += 1

    def add(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Add to a counter / up-down counter."""
        if metric.instrument not in ("counter", "updowncounter"):
            raise ValueError(f"{metric.name} is a {metric.instrument}, not a counter")
        if value != value:  # NaN never enters a cumulative sum
            return
        self.deltas[(metric.name, self.attrs(attributes))] += value

    def add_raw(self, name: str, attrs: Attrs, value: float) -> None:
        """Add to an already capped key (hot path)."""
        self.deltas[(name, attrs)] += value

    def set_gauge(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Set a gauge (NaN removes the point)."""
        if metric.instrument != "gauge":
            raise ValueError(f"{metric.name} is a {metric.instrument}, not a gauge")
        self.gauges[(metric.name, self.attrs(attributes))] = float(value)

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
        idx = np.searchsorted(np.asarray(metric.buckets), values, side="left")
        counts = np.bincount(idx, minlength=len(metric.buckets) + 1)
        name = metric.name
        d = self.deltas
        for i in np.flatnonzero(counts):
            d[(f"{name}|b{i}", attrs)] += float(counts[i])
        d[(f"{name}|sum", attrs)] += float(values.sum())
        d[(f"{name}|count", attrs)] += float(values.size)

    def merge(self, other: Step) -> None:
        """Fold another step's deltas and gauges into this one."""
        for k, v in other.deltas.items():
            self.deltas[k] += v
        self.gauges.update(other.gauges)


class Aggregates:
    """The committed mirror: totals by metric, read by the exporters (thread-safe).

    Self-telemetry bumped outside a step (:meth:`add_uncommitted`, from any thread) is in the mirror at once and
    persisted by the next commit: :meth:`prepare` takes the unpersisted bumps and computes the totals to persist in
    one locked section, :meth:`apply` publishes them keeping bumps that arrived meanwhile, :meth:`restore` gives the
    taken bumps back when the commit failed, and :meth:`resync` rebuilds the mirror from the store's totals (after a
    storage failure whose commit outcome was unknown) without losing unpersisted bumps.
    """

    def __init__(self, totals: Mapping[Key, float] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_metric: dict[str, dict[Attrs, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[Attrs, float]] = defaultdict(dict)
        self._unpersisted: dict[Key, float] = {}
        for (name, attrs), value in (totals or {}).items():
            self._by_metric[name][attrs] = value

    def totals_for(self, deltas: Mapping[Key, float]) -> dict[Key, float]:
        """New totals of the keys a step changes (what the store persists)."""
        with self._lock:
            return {k: self._by_metric.get(k[0], {}).get(k[1], 0.0) + v for k, v in deltas.items()}

    def prepare(self, deltas: Mapping[Key, float]) -> tuple[dict[Key, float], dict[Key, float]]:
        """``(totals to persist, bumps taken)``: a step's new totals plus those of the unpersisted bumps, atomically.

        Pass the bumps to :meth:`restore` if the commit fails.
        """
        with self._lock:
            taken, self._unpersisted = self._unpersisted, {}
            mirror = self._by_metric
            totals = {k: mirror.get(k[0], {}).get(k[1], 0.0) + v for k, v in deltas.items()}
            for k in taken:
                if k not in totals:
                    totals[k] = mirror.get(k[0], {}).get(k[1], 0.0)
            return totals, taken

    def apply(self, totals: Mapping[Key, float], gauges: Mapping[Key, float]) -> None:
        """Publish committed totals and gauges (bumps made since :meth:`prepare` stay on top of them)."""
        with self._lock:
            since = self._unpersisted
            for key, value in totals.items():
                self._by_metric[key[0]][key[1]] = value + since.get(key, 0.0) if since else value
            for (name, attrs), value in gauges.items():
                if value != value:
                    self._gauges[name].pop(attrs, None)
                else:
                    self._gauges[name][attrs] = value

    def restore(self, taken: Mapping[Key, float]) -> None:
        """Give back the bumps :meth:`prepare` took for a commit that failed (the next commit persists them)."""
        with self._lock:
            for key, value in taken.items():
                self._unpersisted[key] = self._unpersisted.get(key, 0.0) + value

    def resync(self, persisted: Mapping[Key, float]) -> None:
        """Rebuild the mirror from the store's ``persisted`` totals plus the bumps not persisted yet."""
        with self._lock:
            self._by_metric = defaultdict(dict)
            for (name, attrs), value in persisted.items():
                self._by_metric[name][attrs] = value
            for (name, attrs), value in self._unpersisted.items():
                d = self._by_metric[name]
                d[attrs] = d.get(attrs, 0.0) + value

    def add_uncommitted(self, name: str, attrs: Attrs, value: float) -> None:
        """Bump a self-telemetry counter that is not tied to a transaction (persisted at the next commit)."""
        with self._lock:
            d = self._by_metric[name]
            d[attrs] = d.get(attrs, 0.0) + value
            key = (name, attrs)
            self._unpersisted[key] = self._unpersisted.get(key, 0.0) + value

    def snapshot(self, name: str) -> list[tuple[Attrs, float]]:
        """Points of one counter (or pseudo-metric)."""
        with self._lock:
            return list(self._by_metric.get(name, {}).items())

    def gauge_snapshot(self, name: str) -> list[tuple[Attrs, float]]:
        """Points of one gauge."""
        with self._lock:
            return list(self._gauges.get(name, {}).items())

    def value(self, name: str, attrs: Mapping[str, str] | None = None) -> float:
        """Total of one point, or the sum over every point of ``name`` when ``attrs`` is None (tests)."""
        with self._lock:
            points = self._by_metric.get(name, {})
            if attrs is None:
                return sum(points.values())
            return points.get(tuple(sorted(attrs.items())), 0.0)

    def all_totals(self) -> dict[Key, float]:
        """Every total (tests and persistence of uncommitted bumps)."""
        with self._lock:
            return {(n, at): v for n, pts in self._by_metric.items() for at, v in pts.items()}
