"""Streaming drift and novelty detectors against a reference.

* :class:`WindowedDrift`: counts production values per reference bin (the per-call counts are additive and become
  ``ml.feature.bin.observations``), keeps the most recent ``window`` observations, and scores that window against the
  reference with every binned method (``psi``, ``jensen_shannon``, ``ks``): the ``ml.feature.drift``,
  ``ml.prediction.drift`` and ``ml.multilabel.set_size_drift`` gauges.
* :class:`UnseenClassCounter`: counts predicted classes (or labels) the reference never had, by class, with a cap on
  distinct classes (overflow ``_other``): ``ml.unseen_class_predictions``.

Not thread-safe: one owner (the processor's writer thread, or an offline loop).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from otel_ml.drift.distribution import OTHER_BIN, Distribution
from otel_ml.drift.methods import BINNED_METHODS

DEFAULT_WINDOW = 5000
"""Most recent observations a drift gauge compares with the reference."""
MIN_WINDOW = 100
"""Fewer observations give NaN scores (no gauge point) instead of noise."""
BLOCK = 256
DEFAULT_UNSEEN_CAP = 50


class WindowedDrift:
    """Drift of the most recent observations of one variable against its reference distribution.

    Example:
        >>> ref = Distribution.fit("x", np.arange(1000.0))
        >>> d = WindowedDrift(ref)
        >>> _ = d.observe(np.arange(1000.0) + 900)
        >>> d.scores()["psi"] > 1
        True
    """

    def __init__(self, reference: Distribution, *, window: int = DEFAULT_WINDOW) -> None:
        self.reference = reference
        self.window = window
        self._blocks: deque[tuple[np.ndarray, int]] = deque()
        self._current = np.zeros(len(reference.labels))
        self._n = 0

    def observe(self, values: Iterable[Any]) -> np.ndarray:
        """Adds values to the window; returns their counts per bin (aligned with ``reference.labels``)."""
        counts = self.reference.count(values)
        self.add_counts(counts)
        return counts

    def add_counts(self, counts: np.ndarray) -> None:
        """Adds per-bin counts (from ``reference.count``) to the window: :meth:`observe` in two steps, so a caller can
        count now and change the window later (after its transaction committed)."""
        n = int(counts.sum())
        if n == 0:
            return
        if self._blocks and self._blocks[-1][1] < BLOCK:
            last, m = self._blocks.pop()
            self._blocks.append((last + counts, m + n))
        else:
            self._blocks.append((counts.copy(), n))
        self._current += counts
        self._n += n
        while self._blocks and self._n - self._blocks[0][1] >= self.window:
            old, m = self._blocks.popleft()
            self._current -= old
            self._n -= m

    @property
    def observations(self) -> int:
        """Observations in the current window."""
        return self._n

    @property
    def current(self) -> np.ndarray:
        """Counts per bin of the current window."""
        return self._current.copy()

    def scores(self, methods: Sequence[str] | None = None) -> dict[str, float]:
        """Every (or the given) binned statistic of the window against the reference; NaN below
        :data:`MIN_WINDOW` observations."""
        names = list(methods) if methods is not None else list(BINNED_METHODS)
        if self._n < MIN_WINDOW:
            return {name: float("nan") for name in names}
        ref = np.asarray(self.reference.counts)
        return {name: BINNED_METHODS[name](ref, np.maximum(self._current, 0.0)) for name in names}


class UnseenClassCounter:
    """Counts classes outside the reference's class set, by class, capped at ``cap`` distinct classes.

    Example:
        >>> c = UnseenClassCounter({"cat", "dog"}, cap=1)
        >>> c.observe(["cat", "Mystery", "Mystery", "Other"])
        {'Mystery': 2, '_other': 1}
    """

    def __init__(self, known: Iterable[str], *, cap: int = DEFAULT_UNSEEN_CAP) -> None:
        self.known = frozenset(known)
        self.cap = cap
        self._seen: set[str] = set()

    def observe(self, classes: Iterable[str]) -> dict[str, int]:
        """Counts of unseen classes among ``classes`` (the cap maps later newcomers to ``_other``)."""
        out: dict[str, int] = {}
        for c in classes:
            if c in self.known:
                continue
            if c not in self._seen and len(self._seen) < self.cap:
                self._seen.add(c)
            key = c if c in self._seen else OTHER_BIN
            out[key] = out.get(key, 0) + 1
        return out

    def is_unseen(self, cls: str) -> bool:
        """Whether ``cls`` is not a reference class."""
        return cls not in self.known
