"""Cross-validated error margins: predictions on simulated chunks from fits that did not see their rows.

Every estimator learns its margin the same way (:mod:`otel_ml.estimation._chunks` draws the chunks): k-fold
out-of-fold predictions for the random chunks, a fit without the whole held-out window for the shifted ones, the
estimate minus the realized metric on each chunk, and per metric the 90th percentile of the error that sampling
noise does not explain, never below the uncertainty of the reference metric itself (:func:`reference_floor`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from otel_ml.estimation import _chunks as ch

MIN_CV_ROWS = 100
"""Below this many reference rows no cross-validation is run; the margin is the reference's own uncertainty."""

CV_FOLDS = 4

FitPredict = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(train_rows, test_rows) -> predictions of test_rows`` (first axis: rows) from a fit on ``train_rows`` only."""
ChunkErrors = dict[str, tuple[np.ndarray, np.ndarray]]
"""Per metric: (estimate - realized, sampling sd) on each chunk."""


def out_of_fold(n: int, folds: list[np.ndarray], fit_predict: FitPredict, rng: np.random.Generator) -> np.ndarray:
    """The prediction of every row from a fit on the other folds (training rows capped by ``ch.train_rows``)."""
    every = np.arange(n)
    out: np.ndarray | None = None
    for test in folds:
        p = fit_predict(ch.train_rows(np.setdiff1d(every, test), rng), test)
        if out is None:
            out = np.empty((n, *p.shape[1:]))
        out[test] = p
    return out if out is not None else np.empty(n)


def held_out(n: int, plan: ch.Plan, fit_predict: FitPredict, rng: np.random.Generator) -> list[np.ndarray]:
    """Per held-out window of ``plan``: predictions of its rows from a fit without them (NaN elsewhere)."""
    every = np.arange(n)
    held: list[np.ndarray] = []
    for pool in plan.windows:
        keep = np.ones(n, dtype=bool)
        keep[pool] = False
        p = fit_predict(ch.train_rows(every[keep], rng), pool)
        full = np.full((n, *p.shape[1:]), np.nan)
        full[pool] = p
        held.append(full)
    return held


def chunk_predictions(plan: ch.Plan, oof: np.ndarray, held: list[np.ndarray]) -> list[np.ndarray]:
    """The predictions of each chunk's rows: out-of-fold for random chunks, held-out for shifted ones."""
    return [oof[c.rows] if c.window < 0 else held[c.window][c.rows] for c in plan.chunks]


def reference_floor(correct_share: float, n: int) -> float:
    """Uncertainty of a reference share (accuracy, exact match) itself: Wilson half-width; 3/n with no errors."""
    if correct_share in (0.0, 1.0):
        return min(1.0, 3.0 / n)
    return float(1.96 * math.sqrt(correct_share * (1 - correct_share) / n))


def margins(errors: ChunkErrors, floor: Mapping[str, float], z: float,
            kinds: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """``(error_margin_, cv_)``: per metric the margin (at least ``floor``) and the weighted chunk MAE."""
    error_margin = {name: max(floor[name], ch.error_margin(e, sd, z)) for name, (e, sd) in errors.items()}
    cv = {name: ch.weighted_mae(e, kinds) for name, (e, _) in errors.items()}
    return error_margin, cv
