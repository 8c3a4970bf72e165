"""The committed mirror of the totals (:class:`Aggregates`), read by the exporters: thread-safe, with the
protocol that publishes a step's totals after its commit without losing self-telemetry bumped meanwhile.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping

from otel_ml.processor.aggregates.keys import _MODEL_SCOPE, Attrs, Key
from otel_ml.semconv import attributes as a


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
