"""Cumulative metric aggregates: the committed in-memory mirror, per-step deltas, cardinality caps.

Every additive metric the processor exports (counters, up-down counters and the bucket counts of its histograms) is
a float keyed by ``(metric name, attributes)``. One processing step collects *deltas* in a :class:`Step`; the store
persists the new totals in the same transaction as the records and joins, and only after the commit are the deltas
added to the :class:`Aggregates` mirror the exporters read. A failed step is discarded as a whole.

Histograms are kept as cumulative bucket counts (``<name>|b<i>``, ``<name>|sum``, ``<name>|count`` pseudo-metrics),
so they are durable like the counters (the OTel SDK histogram costs ~16 µs per ``record``; bucketing a batch with
numpy costs well under 1 µs per value).

Cardinality (:class:`Capper`), per model and capped attribute key (and for model names themselves):

* values of a loaded reference artifact are *pinned*: always admitted, outside the cap (:meth:`Capper.pin`);
* other values take one of ``metrics.cardinality_limit`` slots; once half the slots are taken, a new value needs
  ``metrics.cardinality_admission`` sightings (separate steps) first, so one-off junk cannot fill the cap;
* when the cap is full, the least recently seen value gives up its slot if it was not seen for
  ``metrics.cardinality_idle``: its series are removed from the mirror and the store (:meth:`Capper.take_retired`);
* last-seen times are persisted (store state), so a restart neither forgets nor resurrects them;
* beyond ``metrics.series_limit`` points per metric, new attribute combinations are folded into the point whose
  capped attributes are all ``_other``.

Every value mapped to ``_other`` is counted in ``ml.processor.attribute.overflow{ml.reason}``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import numpy as np

from otel_ml.processor.caches import ByteCache, approx_size
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import OverflowReason
from otel_ml.semconv.metrics import MetricSpec

_logger = logging.getLogger(__name__)

Attrs = tuple[tuple[str, str], ...]
"""Attributes of one data point: sorted ``(key, value)`` pairs."""
Key = tuple[str, Attrs]

CAPPED_KEYS: Final = frozenset({a.ML_MODEL_VERSION, a.ML_SEGMENT, a.ML_CLASS, a.ML_FEATURE_NAME, a.ML_BIN,
                                a.ML_WEAK_SEGMENT})
"""Metric attributes whose values are capped per model (the others are bounded enums)."""
_MODEL_SCOPE: Final = ""
_MODELS: Final = (_MODEL_SCOPE, a.ML_MODEL_NAME)
"""The cap of model names."""
DEFAULT_IDLE_S: Final = 86400.0
DEFAULT_ADMISSION: Final = 20
DEFAULT_SERIES_LIMIT: Final = 10_000
STATE_KEY: Final = "cardinality"
"""Store state blob of the last-seen times (JSON)."""
SAVE_INTERVAL_S: Final = 60.0
"""How often changed last-seen times are written to the store."""
_CANDIDATES_PER_SLOT: Final = 4
"""Values waiting for admission, per slot of a cap (least recently seen leave first)."""

_ENCODED: ByteCache[Attrs, str] = ByteCache("aggregates.encoded", 16 << 20)


def encode_attrs(attrs: Attrs) -> str:
    """Stable text form of an attribute tuple (database key)."""
    text = _ENCODED.get(attrs)
    if text is None:
        text = _ENCODED.put(attrs, json.dumps(attrs, separators=(",", ":")))
    return text


def decode_attrs(text: str) -> Attrs:
    """Inverse of :func:`encode_attrs`."""
    return tuple((str(k), str(v)) for k, v in json.loads(text))


class Capper:
    """Per-model cardinality caps (see the module docstring); owned by the writer thread (not thread-safe).

    Args:
        limit: Slots per model and capped key, and for model names (``metrics.cardinality_limit``).
        idle: Seconds after which an unseen value may lose its slot to a new one (``metrics.cardinality_idle``).
        admission: Sightings a new value needs once half the slots are taken (``metrics.cardinality_admission``).
        series_limit: Points per metric (``metrics.series_limit``).
        clock: Seconds since the epoch.
    """

    def __init__(self, limit: int, idle: float = DEFAULT_IDLE_S, admission: int = DEFAULT_ADMISSION,
                 series_limit: int = DEFAULT_SERIES_LIMIT, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.idle = idle
        self.admission = admission
        self.series_limit = series_limit
        self.clock = clock
        self._slots: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        """(model, key) -> value -> last seen; dict order is least recently seen first."""
        self._pinned: dict[tuple[str, str], frozenset[str]] = {}
        self._candidates: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self._retired: list[tuple[str, str, str]] = []
        self._changed = False
        self._last_save = 0.0
        self._refresh = min(60.0, idle / 4)
        self._last_refresh = clock()
        self.attr_cache: ByteCache[Attrs, Attrs] = ByteCache("aggregates.attrs", 16 << 20)
        """:meth:`Step.attrs` results that capped nothing, by their input (emptied every ``min(60 s, idle/4)``
        so that the last-seen times of values in use stay fresh)."""

    # --- admission --------------------------------------------------------------------------------------------------
    def admit(self, model: str, key: str, value: str, now: float) -> str | None:
        """``None`` when ``value`` may be used (registering it when there is room), else the overflow reason."""
        if value == a.OVERFLOW_VALUE:
            return None
        cap = (model, key)
        pinned = self._pinned.get(cap)
        if pinned is not None and value in pinned:
            return None
        slots = self._slots[cap]
        if value in slots:
            del slots[value]  # re-inserted last: the dict stays ordered by last sighting
            slots[value] = now
            return None
        if len(slots) >= self.limit:
            oldest = next(iter(slots))
            if now - slots[oldest] < self.idle:
                return OverflowReason.LIMIT
            self._retire(model, key, oldest)
        if len(slots) >= self.limit // 2 and self.admission > 1:
            candidates = self._candidates[cap]
            seen = candidates.pop(value, 0) + 1
            if seen < self.admission:
                candidates[value] = seen
                while len(candidates) > _CANDIDATES_PER_SLOT * self.limit:
                    del candidates[next(iter(candidates))]
                return OverflowReason.ADMISSION
        slots[value] = now
        self._changed = True
        return None

    def _retire(self, model: str, key: str, value: str) -> None:
        del self._slots[(model, key)][value]
        self._retired.append((model, key, value))
        self._changed = True
        if model == _MODEL_SCOPE and key == a.ML_MODEL_NAME:  # a model leaves: every cap of it goes too
            for cap in [c for c in self._slots if c[0] == value]:
                del self._slots[cap]
            for cap in [c for c in self._candidates if c[0] == value]:
                del self._candidates[cap]
        _logger.info("cardinality: %s=%r of model %r unseen for %.0f s gave up its slot", key, value[:64], model[:64],
                     self.idle)

    def requeue_retired(self, retired: list[tuple[str, str, str]]) -> None:
        """Give back what :meth:`take_retired` returned when the step that was to delete the series failed."""
        self._retired[:0] = retired

    def take_retired(self) -> list[tuple[str, str, str]]:
        """``(model, key, value)`` of the values that lost their slot since the last call (their series go)."""
        retired, self._retired = self._retired, []
        if retired:
            self.attr_cache.shed()
        return retired

    def begin_step(self, now: float) -> None:
        """Refresh the attribute cache periodically (cache hits do not update last-seen times)."""
        if now - self._last_refresh >= self._refresh:
            self._last_refresh = now
            self.attr_cache.shed()

    # --- reference values ---------------------------------------------------------------------------------------------
    def pin(self, model: str, values: Mapping[str, Iterable[str]]) -> None:
        """Values of ``model`` a reference artifact knows, by key: always admitted, outside the caps; the model
        itself is pinned too. Replaces what was pinned for ``model``; an empty mapping unpins it."""
        if not model:
            return
        for cap in [c for c in self._pinned if c[0] == model]:
            del self._pinned[cap]
        models = set(self._pinned.get(_MODELS, frozenset()))
        models.discard(model)
        if values:
            models.add(model)
            self._slots[_MODELS].pop(model, None)
            for key, vals in values.items():
                if key in CAPPED_KEYS:
                    pinned = self._pinned[(model, key)] = frozenset(map(str, vals))
                    slots = self._slots[(model, key)]
                    for v in pinned.intersection(slots):
                        del slots[v]
        self._pinned[_MODELS] = frozenset(models)
        self.attr_cache.shed()

    def pinned(self, model: str, key: str) -> frozenset[str]:
        """Pinned values of a cap (``("", "ml.model.name")`` for the pinned models)."""
        return self._pinned.get((model, key), frozenset())

    # --- persistence --------------------------------------------------------------------------------------------------
    def restore(self, keys: Iterable[Key], state: bytes | None = None) -> None:
        """Register the values of persisted aggregates so caps stay stable across restarts (and resyncs).

        Last-seen times come from ``state`` (:meth:`state`); a value without one (a store written before they were
        persisted) counts as seen now. Values already held keep theirs. A cap over its limit (a lower limit than
        before) keeps its most recently seen values.
        """
        seen: dict[tuple[str, str], dict[str, float]] = {}
        if state:
            try:
                for model, key, values in json.loads(state)["caps"]:
                    seen[(str(model), str(key))] = {str(v): float(t) for v, t in values}
            except (ValueError, KeyError, TypeError):
                _logger.warning("ignoring unreadable cardinality state (last-seen times restart now)")
        now = self.clock()
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for _, attrs in keys:
            d = dict(attrs)
            model = d.get(a.ML_MODEL_NAME, _MODEL_SCOPE)
            if a.ML_MODEL_NAME in d and model != a.OVERFLOW_VALUE:
                found[_MODELS].add(model)
            for k, v in attrs:
                if k in CAPPED_KEYS and v != a.OVERFLOW_VALUE:
                    found[(model, k)].add(v)
        for cap, values in found.items():
            times = seen.get(cap, {})
            held = self._slots[cap]
            merged = {**{v: times.get(v, now) for v in values}, **held}
            ordered = sorted(merged, key=merged.__getitem__)[-self.limit:]
            self._slots[cap] = {v: merged[v] for v in ordered}

    def state(self) -> bytes:
        """The last-seen times (JSON), for :meth:`restore`."""
        caps = [[model, key, [[v, round(t, 1)] for v, t in slots.items()]]
                for (model, key), slots in self._slots.items() if slots]
        return json.dumps({"version": 1, "caps": caps}, separators=(",", ":")).encode()

    def save_due(self, now: float) -> bytes | None:
        """The state to persist when it changed and :data:`SAVE_INTERVAL_S` passed since the last save."""
        if now - self._last_save < SAVE_INTERVAL_S or not (self._changed or now - self._last_save >= 3600.0):
            return None
        self._last_save = now
        self._changed = False
        return self.state()

    def slots(self, model: str, key: str) -> dict[str, float]:
        """Admitted values of a cap and their last-seen times (tests, diagnostics)."""
        return dict(self._slots.get((model, key), {}))

    def approx_bytes(self) -> int:
        """Approximate bytes held by the caps (values, times, candidates)."""
        return sum(approx_size(v) + 48 for slots in self._slots.values() for v in slots) + \
            sum(approx_size(v) + 48 for cands in self._candidates.values() for v in cands)


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


def _retired_sets(retired: Iterable[tuple[str, str, str]]) -> tuple[set[tuple[str, str, str]], set[str]]:
    values = set(retired)
    return values, {v for model, k, v in values if model == _MODEL_SCOPE and k == a.ML_MODEL_NAME}


def _matches(attrs: Attrs, retired: set[tuple[str, str, str]], models: set[str]) -> bool:
    d = dict(attrs)
    model = d.get(a.ML_MODEL_NAME)
    if model is None:
        return False
    if model in models:
        return True
    return any((model, k, v) in retired for k, v in attrs)


class Aggregates:
    """The committed mirror: totals by metric, read by the exporters (thread-safe).

    Self-telemetry bumped outside a step (:meth:`add_uncommitted`, from any thread) is in the mirror at once and
    persisted by the next commit: :meth:`prepare` takes the unpersisted bumps and computes the totals to persist in
    one locked section, :meth:`apply` publishes them keeping bumps that arrived meanwhile, :meth:`restore` gives the
    taken bumps back when the commit failed, and :meth:`resync` rebuilds the mirror from the store's totals (after a
    storage failure whose commit outcome was unknown) without losing unpersisted bumps. Series that lost their
    cardinality slot leave the mirror once their deletion committed (:meth:`retire_keys`, :meth:`remove`).
    """

    def __init__(self, totals: Mapping[Key, float] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_metric: dict[str, dict[Attrs, float]] = defaultdict(dict)
        self._gauges: dict[str, dict[Attrs, float]] = defaultdict(dict)
        self._unpersisted: dict[Key, float] = {}
        for (name, attrs), value in (totals or {}).items():
            self._by_metric[name][attrs] = value

    def has(self, name: str, attrs: Attrs) -> bool:
        """Whether the point exists (no lock: a dict lookup; only the writer thread adds points)."""
        points = self._by_metric.get(name)
        return points is not None and attrs in points

    def points(self, name: str) -> int:
        """Number of points of ``name``."""
        points = self._by_metric.get(name)
        return 0 if points is None else len(points)

    def has_gauge(self, name: str, attrs: Attrs) -> bool:
        """Whether the gauge point exists."""
        points = self._gauges.get(name)
        return points is not None and attrs in points

    def gauge_points(self, name: str) -> int:
        """Number of points of the gauge ``name``."""
        points = self._gauges.get(name)
        return 0 if points is None else len(points)

    def retire_keys(self, retired: Iterable[tuple[str, str, str]]) -> list[Key]:
        """Keys of the counter points holding a retired ``(model, key, value)`` (see :meth:`Capper.take_retired`)."""
        values, models = _retired_sets(retired)
        with self._lock:
            return [(name, attrs) for name, points in self._by_metric.items() for attrs in points
                    if _matches(attrs, values, models)]

    def remove(self, keys: Iterable[Key], retired: Iterable[tuple[str, str, str]]) -> None:
        """Drop counter points (committed deletions) and the gauge points holding a retired value."""
        values, models = _retired_sets(retired)
        with self._lock:
            for name, attrs in keys:
                self._by_metric.get(name, {}).pop(attrs, None)
            for points in self._gauges.values():
                for attrs in [at for at in points if _matches(at, values, models)]:
                    del points[attrs]

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
