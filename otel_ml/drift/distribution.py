"""Binned reference distributions of features, predictions, scores and predictions-per-sample.

A :class:`Distribution` is fitted on the reference and then maps any value to a bin label. Numeric values use
quantile edges of the reference (at most :data:`DEFAULT_BINS` bins, open-ended at both sides so every production
value has a bin), except variables with at most :data:`MAX_DISCRETE` distinct values (counts, set sizes, ratings),
which get one bin per value (edges half-way between consecutive values): quantile edges would merge most of their
values into a few bins and hide a shift between them. Categorical values use the reference's most frequent values
plus :data:`OTHER_BIN` for anything else (including classes the reference never had). Missing values have their own
bin. Counting production values
per bin is additive, so the processor exports the counts as counters and any window's distribution can be compared
with the reference's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from otel_ml.semconv.attributes import OVERFLOW_VALUE

DEFAULT_BINS = 10
MAX_DISCRETE = 20
"""Numeric variables with at most this many distinct reference values get one bin per value."""
MAX_CATEGORIES = 30
"""Categorical bins kept per feature (the most frequent reference values); more would crowd the metric."""
OTHER_BIN = OVERFLOW_VALUE
MISSING_BIN = "missing"

NUMERIC = "numeric"
CATEGORICAL = "categorical"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


@dataclass
class Distribution:
    """Reference distribution of one variable.

    Attributes:
        name: Variable name (feature name, ``prediction``, ``score``, ``set_size``).
        kind: ``numeric`` or ``categorical``.
        edges: Numeric: inner bin edges, increasing (bin i is ``[edges[i-1], edges[i])``; first and last open).
        categories: Categorical: the values with their own bin.
        counts: Reference count per bin, aligned with :attr:`labels`.
        low: Numeric: smallest reference value (NaN when none).
        high: Numeric: largest reference value.
    """

    name: str
    kind: str
    edges: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    counts: list[float] = field(default_factory=list)
    low: float = float("nan")
    high: float = float("nan")

    @classmethod
    def fit(cls, name: str, values: Sequence[Any] | np.ndarray, *, kind: str | None = None,
            bins: int = DEFAULT_BINS, max_categories: int = MAX_CATEGORIES) -> Distribution:
        """Fits bins on reference values (numeric when every present value is a real number, unless ``kind``)."""
        arr = np.asarray(values, dtype=object)
        present = [v for v in arr if not _is_missing(v)]
        if kind is None:
            kind = NUMERIC if present and all(_is_number(v) for v in present) else CATEGORICAL
        dist = cls(name, kind)
        if kind == NUMERIC:
            x = np.asarray([float(v) for v in present], dtype=float)
            x = x[np.isfinite(x)]
            if x.size:
                distinct = np.unique(x)
                if distinct.size <= MAX_DISCRETE:
                    dist.edges = [float(e) for e in (distinct[1:] + distinct[:-1]) / 2]
                else:
                    qs = np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])
                    dist.edges = [float(e) for e in np.unique(qs)]
                dist.low, dist.high = float(x.min()), float(x.max())
        else:
            tally: dict[str, int] = {}
            for v in present:
                key = _as_string(v)
                tally[key] = tally.get(key, 0) + 1
            order = sorted(tally.items(), key=lambda t: (-t[1], t[0]))
            dist.categories = [u for u, _ in order[:max_categories]]
        dist.counts = dist.count(arr).tolist()
        return dist

    @property
    def labels(self) -> list[str]:
        """Bin labels: numeric ``<a``, ``[a,b)``, ``>=z``; categorical values, then ``_other``; then ``missing``."""
        if self.kind == NUMERIC:
            if not self.edges:
                return ["all", MISSING_BIN]
            e = self.edges
            inner = [f"[{_fmt(e[i])},{_fmt(e[i + 1])})" for i in range(len(e) - 1)]
            return [f"<{_fmt(e[0])}", *inner, f">={_fmt(e[-1])}", MISSING_BIN]
        return [*self.categories, OTHER_BIN, MISSING_BIN]

    def bin_indices(self, values: Iterable[Any]) -> np.ndarray:
        """Bin index of every value (aligned with :attr:`labels`)."""
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
        n_labels = len(self.labels)
        out = np.full(arr.shape[0], n_labels - 1, dtype=np.int64)
        if self.kind == NUMERIC:
            x = np.array([float(v) if _is_number(v) else np.nan for v in arr], dtype=float)
            ok = np.isfinite(x)
            out[ok] = np.searchsorted(np.asarray(self.edges), x[ok], side="right") if self.edges else 0
        else:
            index = {c: i for i, c in enumerate(self.categories)}
            other = len(self.categories)
            for i, v in enumerate(arr):
                if not _is_missing(v):
                    out[i] = index.get(_as_string(v), other)
        return out

    def outside(self, values: Iterable[Any]) -> np.ndarray:
        """Numeric: whether each value lies outside the reference's [low, high] range; categorical: whether it
        is a present value without its own bin (never seen often enough in the reference)."""
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=object)
        if self.kind == NUMERIC:
            x = np.array([float(v) if _is_number(v) else np.nan for v in arr], dtype=float)
            with np.errstate(invalid="ignore"):
                return np.asarray((x < self.low) | (x > self.high))
        known = set(self.categories)
        return np.asarray([not _is_missing(v) and _as_string(v) not in known for v in arr], dtype=bool)

    def count(self, values: Iterable[Any]) -> np.ndarray:
        """Counts per bin of ``values``."""
        idx = self.bin_indices(values)
        return np.bincount(idx, minlength=len(self.labels)).astype(float)

    @property
    def total(self) -> float:
        """Reference observations."""
        return float(sum(self.counts))

    def to_json(self) -> dict[str, Any]:
        """JSON form (includes the labels for people reading the artifact)."""
        return {"name": self.name, "kind": self.kind, "edges": self.edges, "categories": self.categories,
                "labels": self.labels, "counts": self.counts, "low": self.low, "high": self.high}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Distribution:
        """Inverse of :meth:`to_json`."""
        dist = cls(str(data["name"]), str(data["kind"]), [float(e) for e in data.get("edges", [])],
                   [str(c) for c in data.get("categories", [])], [float(c) for c in data["counts"]],
                   float(data.get("low", float("nan"))), float(data.get("high", float("nan"))))
        if len(dist.counts) != len(dist.labels):
            raise ValueError(f"distribution {dist.name!r}: {len(dist.counts)} counts for {len(dist.labels)} bins")
        return dist


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float | np.floating) and not np.isfinite(v))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)


def _as_string(v: Any) -> str:
    if isinstance(v, float | np.floating) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, bool | np.bool_):
        return "True" if v else "False"
    return str(v)
