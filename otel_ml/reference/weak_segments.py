"""Weak segments: slices of the evaluation set whose quality is significantly below the overall level.

Slices are single conditions: a segment attribute's value (``region=apac``), a bin of a feature's reference
distribution (``age=[30,40)``) or of the predictions-per-sample distribution (``set_size=>=4``). A slice is weak when
it has at least :data:`MIN_SUPPORT` rows and its 95 % interval lies entirely on the bad side of the overall metric:
Wilson's interval for proportions (accuracy, exact match), a normal interval of the mean for errors (MAE), and for
ratio metrics (multilabel per-label precision, recall and F1, pooled over the labels: ``sum tp / sum (tp + fp)``...)
the normal interval of a ratio estimator, linearized per row (rows are the sampling units: a sample's labels are
not independent). A slice weak on several metrics is listed once, under the metric on which it is weakest (in
standard errors). The result is sorted weakest first and capped at :data:`MAX_SEGMENTS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from otel_ml.drift.distribution import MISSING_BIN, Distribution
from otel_ml.reference.artifact import WeakSegment

MIN_SUPPORT = 30
MAX_SEGMENTS = 20
Z95 = 1.96


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion.

    >>> [round(x, 3) for x in wilson_interval(8, 10)]
    [0.49, 0.943]
    """
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio_interval(num: np.ndarray, den: np.ndarray, z: float = Z95) -> tuple[float, float, float] | None:
    """Ratio of sums ``sum(num) / sum(den)`` with its normal interval from the per-row linearization
    ``var = sum((num_i - r den_i)^2) / sum(den)^2 * n / (n - 1)``; None when the denominator is 0 or one row.

    >>> [round(x, 3) for x in ratio_interval(np.array([1.0, 0, 2, 1]), np.array([1.0, 1, 2, 2]))]
    [0.667, 0.269, 1.064]
    """
    total = float(den.sum())
    rows = num.shape[0]
    if total <= 0 or rows < 2:
        return None
    r = float(num.sum()) / total
    se = math.sqrt(float(np.sum((num - r * den) ** 2)) * rows / (rows - 1)) / total
    return r, r - z * se, r + z * se


def find_weak_segments(
    quality: np.ndarray,
    *,
    metric: str,
    higher_is_better: bool,
    segments: Mapping[str, np.ndarray],
    binned: Mapping[str, tuple[Distribution, np.ndarray, str]],
    min_support: int = MIN_SUPPORT,
    ratios: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> list[WeakSegment]:
    """Weak slices of an evaluation set.

    Args:
        quality: Per-row quality: 0/1 correctness (``higher_is_better``) or an error (lower is better).
        metric: Name of the metric the per-row quality averages to.
        higher_is_better: True for proportions, False for errors.
        segments: Segment dimension -> per-row value strings.
        binned: Column -> (reference distribution, per-row raw values, kind) for features and set sizes.
        min_support: Smallest slice considered.
        ratios: More metrics (higher is better) as ratios of per-row sums: name -> (numerator, denominator) per
            row, e.g. multilabel micro precision ``(tp, tp + fp)``.
    """
    n = quality.shape[0]
    if n == 0:
        return []
    overall = float(np.mean(quality))
    proportion = higher_is_better and bool(np.all((quality == 0) | (quality == 1)))
    ratio_overall = {name: float(num.sum() / den.sum()) for name, (num, den) in (ratios or {}).items()
                     if float(den.sum()) > 0}
    out: list[WeakSegment] = []

    def consider(kind: str, column: str, label: str, mask: np.ndarray) -> None:
        support = int(mask.sum())
        if support < min_support or support == n:
            return
        name = f"{column}={label}"
        found: list[tuple[float, WeakSegment]] = []
        q = quality[mask]
        value = float(q.mean())
        if proportion:
            lo, hi = wilson_interval(float(q.sum()), support)
        else:
            half = Z95 * float(q.std(ddof=1)) / math.sqrt(support)
            lo, hi = value - half, value + half
        if hi < overall if higher_is_better else lo > overall:
            half = (hi - lo) / 2 or math.inf
            found.append((abs(overall - value) / half,
                          WeakSegment(name, kind, column, label, support, metric, value, lo, hi, overall)))
        for ratio_name, (num, den) in (ratios or {}).items():
            whole = ratio_overall.get(ratio_name)
            interval = ratio_interval(num[mask], den[mask])
            if whole is None or interval is None:
                continue
            r, r_lo, r_hi = interval
            if r_hi < whole:
                found.append(((whole - r) / max(r_hi - r, 1e-12),
                              WeakSegment(name, kind, column, label, support, ratio_name, r, r_lo, r_hi, whole)))
        if found:
            out.append(max(found, key=lambda t: t[0])[1])

    for dim, values in segments.items():
        strings = np.asarray(values, dtype=object)
        for label in sorted({str(v) for v in strings if v is not None and str(v) != ""}):
            consider("segment", dim, label, strings == label)
    for column, (dist, raw, kind) in binned.items():
        idx = dist.bin_indices(raw)
        for b, label in enumerate(dist.labels):
            if label != MISSING_BIN:
                consider(kind, column, label, idx == b)
    def shortfall(w: WeakSegment) -> float:
        return w.value - w.overall if w.metric == metric and not higher_is_better else w.overall - w.value

    out.sort(key=lambda w: (-shortfall(w), w.name))  # largest shortfall first
    return out[:MAX_SEGMENTS]
