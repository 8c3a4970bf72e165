"""Drift statistics between a reference and a current distribution (registry keys = ``ml.drift.method`` values).

* ``psi``: population stability index, ``sum (q - p) ln(q / p)`` over bins with additive smoothing (0.5 per bin);
  rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant.
* ``jensen_shannon``: Jensen-Shannon *distance* (square root of the divergence, base 2) in [0, 1]; 0 = same.
* ``ks``: two-sample Kolmogorov-Smirnov statistic on raw numeric samples (max CDF distance), and
  :func:`binned_ks` on bin counts (a lower bound of the raw statistic).

All take counts or samples and return NaN when either side is empty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

PSI = "psi"
JENSEN_SHANNON = "jensen_shannon"
KS = "ks"
SMOOTHING = 0.5


def _probs(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, dtype=float) + SMOOTHING
    return c / c.sum()


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    if np.sum(reference) <= 0 or np.sum(current) <= 0:
        return float("nan")
    p, q = _probs(reference), _probs(current)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of two count vectors over the same bins, in [0, 1]."""
    r, c = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if r.sum() <= 0 or c.sum() <= 0:
        return float("nan")
    p, q = r / r.sum(), c / c.sum()
    mid = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / mid[nz])))

    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def binned_ks(reference: np.ndarray, current: np.ndarray) -> float:
    """Largest distance between the two cumulative distributions over ordered bins."""
    r, c = np.asarray(reference, dtype=float), np.asarray(current, dtype=float)
    if r.sum() <= 0 or c.sum() <= 0:
        return float("nan")
    return float(np.max(np.abs(np.cumsum(r) / r.sum() - np.cumsum(c) / c.sum())))


def ks(reference: np.ndarray, current: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of raw samples (NaNs dropped)."""
    a = np.sort(np.asarray(reference, dtype=float)[np.isfinite(reference)])
    b = np.sort(np.asarray(current, dtype=float)[np.isfinite(current)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    grid = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, grid, side="right") / a.size
                               - np.searchsorted(b, grid, side="right") / b.size)))


BINNED_METHODS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    PSI: psi,
    JENSEN_SHANNON: jensen_shannon,
    KS: binned_ks,
}
"""Statistics on bin counts, by ``ml.drift.method`` key."""


def drift_score(method: str, reference: np.ndarray, current: np.ndarray) -> float:
    """Statistic ``method`` on two count vectors.

    Raises:
        ValueError: Unknown method (the message lists the known ones).
    """
    fn = BINNED_METHODS.get(method)
    if fn is None:
        raise ValueError(f"unknown drift method {method!r}; known: {sorted(BINNED_METHODS)}")
    return fn(reference, current)
