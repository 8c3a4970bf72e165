"""Regression quality as additive sums: count, absolute, squared and signed error."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(slots=True)
class RegressionSums:
    """Sufficient statistics: MAE = abs/n, RMSE = sqrt(sq/n), bias = signed/n (``y_pred - y_true``)."""

    labeled: int = 0
    absolute_error: float = 0.0
    squared_error: float = 0.0
    signed_error: float = 0.0


def regression_sums(y_true: ArrayLike, y_pred: ArrayLike) -> RegressionSums:
    """Sums of one batch (both finite float arrays of the same length).

    Example:
        >>> regression_sums([1.0, 2.0], [2.0, 0.0])
        RegressionSums(labeled=2, absolute_error=3.0, squared_error=5.0, signed_error=-1.0)
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape}, y_pred {p.shape}")
    err = p - t
    return RegressionSums(int(t.size), float(np.abs(err).sum()), float((err * err).sum()), float(err.sum()))


class RegressionAccumulator:
    """Mergeable accumulator of :class:`RegressionSums`."""

    def __init__(self) -> None:
        self.sums_ = RegressionSums()

    def update(self, y_true: ArrayLike, y_pred: ArrayLike) -> RegressionAccumulator:
        """Add a batch."""
        return self.merge_sums(regression_sums(y_true, y_pred))

    def merge_sums(self, o: RegressionSums) -> RegressionAccumulator:
        """Add precomputed sums."""
        s = self.sums_
        s.labeled += o.labeled
        s.absolute_error += o.absolute_error
        s.squared_error += o.squared_error
        s.signed_error += o.signed_error
        return self

    def merge(self, other: RegressionAccumulator) -> RegressionAccumulator:
        """Add another accumulator."""
        return self.merge_sums(other.sums_)

    def mae(self) -> float:
        """Mean absolute error; NaN when empty."""
        return self.sums_.absolute_error / self.sums_.labeled if self.sums_.labeled else float("nan")

    def rmse(self) -> float:
        """Root mean squared error; NaN when empty."""
        return math.sqrt(self.sums_.squared_error / self.sums_.labeled) if self.sums_.labeled else float("nan")

    def bias(self) -> float:
        """Mean signed error (``y_pred - y_true``); NaN when empty."""
        return self.sums_.signed_error / self.sums_.labeled if self.sums_.labeled else float("nan")
