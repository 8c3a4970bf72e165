"""Rolling windows of the estimation stage that feed quantities which do not decompose.

* :class:`NoveltyWindow`: the novelty p-values of a model version's most recent predictions (the last
  :data:`~otel_ml.drift.detectors.DEFAULT_WINDOW`), from which the share ``r`` of recent traffic that comes from
  outside the reference's distribution is estimated (:func:`otel_ml.estimation.novelty.novel_share`). ``r``
  discounts each prediction's correctness in ``ml.estimated.pessimistic_correct_predictions``; it is about 0 on
  traffic the reference covers.
* :class:`ScoreWindow`: the scores and estimated class distributions of the most recent ``metrics.auc_window``
  predictions with scores, behind the ``ml.estimated.classification.roc_auc`` gauge (binary: the positive class;
  multiclass: one-vs-rest, macro), the estimated twin of the realized ``ml.classification.roc_auc`` window.

Both are ring buffers of fixed size (bounded memory), in memory only: after a restart they refill from new traffic.
"""

from __future__ import annotations

import math

import numpy as np

from otel_ml.drift.detectors import DEFAULT_WINDOW
from otel_ml.estimation import metrics as em
from otel_ml.estimation.novelty import novel_share

AUC_INTERVAL_S = 10.0
"""Seconds between recomputations of the estimated ROC AUC gauge of one model version (the default export
interval: a faster gauge is not seen)."""


class _Ring:
    """A fixed-size ring of rows (first axis), oldest overwritten first."""

    def __init__(self, size: int, width: int) -> None:
        self.data = np.full((size, width), np.nan)
        self.pos = 0
        self.filled = 0

    def extend(self, rows: np.ndarray) -> None:
        size = self.data.shape[0]
        if rows.shape[0] >= size:
            rows = rows[-size:]
        idx = (self.pos + np.arange(rows.shape[0])) % size
        self.data[idx] = rows
        self.pos = int((self.pos + rows.shape[0]) % size)
        self.filled = min(self.filled + rows.shape[0], size)

    def values(self) -> np.ndarray:
        return self.data[:self.filled]


class NoveltyWindow:
    """Novelty p-values of the most recent predictions of one model version (NaN: not measured)."""

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        self._ring = _Ring(size, 1)

    def extend(self, pvalues: np.ndarray) -> None:
        """Adds the p-values of predictions of known classes (unseen classes are novel by definition)."""
        if pvalues.size:
            self._ring.extend(np.asarray(pvalues, dtype=float).reshape(-1, 1))

    def novel_share(self, pending: np.ndarray | None = None) -> float:
        """Estimated share of the window's predictions from outside the reference's distribution (0: none or not
        measured); with ``pending``, as if those p-values were added (the window itself is not changed)."""
        values = self._ring.values()[:, 0]
        if pending is not None and pending.size:
            size = self._ring.data.shape[0]
            values = np.concatenate([values, np.asarray(pending, dtype=float)])[-size:]
        return novel_share(values) if values.size else 0.0


class ScoreWindow:
    """Scores and estimated class distributions of the most recent predictions with scores of one model version."""

    def __init__(self, size: int, classes: int) -> None:
        self.classes = classes
        self._ring = _Ring(size, 2 * classes)
        self.dirty = False
        self.computed_at = -math.inf

    def due(self, now: float) -> bool:
        """Whether the gauge should be recomputed: new rows since the last time, at most every
        :data:`AUC_INTERVAL_S` (an expected AUC over 10 000 rows costs about 3 ms per class)."""
        return self.dirty and now - self.computed_at >= AUC_INTERVAL_S

    def extend(self, scores: np.ndarray, class_proba: np.ndarray) -> None:
        """Adds rows of ``scores`` ``(n, k)`` and ``class_proba`` ``(n, k)``; rows with a NaN score are skipped."""
        ok = np.isfinite(scores).all(axis=1)
        if ok.any():
            self._ring.extend(np.hstack([scores[ok], class_proba[ok]]))
            self.dirty = True

    def roc_auc(self, now: float = math.inf) -> float:
        """Expected ROC AUC of the window (binary: column 1 is the positive class); NaN while undefined."""
        self.dirty = False
        self.computed_at = now
        data = self._ring.values()
        k = self.classes
        if data.shape[0] < 2:
            return float("nan")
        if k == 2:
            return em.expected_roc_auc(data[:, 1], data[:, k + 1])
        return em.expected_roc_auc_ovr(data[:, :k], data[:, k:])
