"""Simulated analysis chunks drawn from a reference set: how estimators are compared and their error margins learned.

Two kinds of chunks are drawn from the out-of-fold predictions of the reference:

* ``random``: uniform samples, where a calibrated estimator is unbiased and only sampling noise remains;
* ``shifted``: samples from the low or high 40 % of one feature (or of the model's confidence), with the
  estimator fitted *without* that window: a covariate shift into a region the estimator has not seen. An estimator
  that ignores where the traffic comes from, or extrapolates badly, is biased here.

Estimators are ranked by their mean absolute error over both kinds (each kind weighted equally), and the error margin
of a metric is the 90th percentile, over chunks, of the part of the absolute error that the sampling spread
(``z`` standard deviations) does not explain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RANDOM = "random"
SHIFTED = "shifted"
MAX_SHIFT_DIRECTIONS = 3
RANDOM_CHUNKS = 30
SHIFTED_CHUNKS_PER_WINDOW = 3
SHIFT_SHARE = 0.4
MARGIN_QUANTILE = 0.9
MAX_TRAIN_ROWS = 10_000
"""Cross-validation fits use at most this many training rows (the final fit uses all)."""


@dataclass(frozen=True)
class Chunk:
    """Row indices of one simulated chunk, its kind (``random`` or ``shifted``) and, for shifted chunks, the index
    of the held-out window it was drawn from."""

    rows: np.ndarray
    kind: str
    window: int = -1


@dataclass(frozen=True)
class Plan:
    """Simulated chunks and the held-out windows (row indices) the shifted chunks come from."""

    chunks: list[Chunk]
    windows: list[np.ndarray]

    @property
    def kinds(self) -> list[str]:
        """Kind of each chunk."""
        return [c.kind for c in self.chunks]


def default_chunk_size(n: int) -> int:
    """Chunk size used for simulation: a tenth of the reference, between 50 and 2000 rows."""
    return int(min(max(n // 10, 50), 2000, n))


def shift_directions(columns: np.ndarray, target: np.ndarray, limit: int = MAX_SHIFT_DIRECTIONS) -> list[int]:
    """Columns most associated with ``target`` (absolute rank correlation), at most ``limit``, varying ones only."""
    scored = []
    t = target.astype(float) - float(np.mean(target))
    for j in range(columns.shape[1]):
        col = columns[:, j]
        ok = np.isfinite(col)
        if np.unique(col[ok]).shape[0] < 2:
            continue
        ranks = np.argsort(np.argsort(np.where(ok, col, np.nanmedian(col)), kind="stable"), kind="stable")
        r = ranks - ranks.mean()
        denom = float(np.sqrt(np.sum(r**2) * np.sum(t**2)))
        scored.append((abs(float(np.sum(r * t))) / denom if denom > 0 else 0.0, j))
    return [j for _, j in sorted(scored, reverse=True)[:limit]]


def plan_chunks(columns: np.ndarray, target: np.ndarray, chunk_size: int, rng: np.random.Generator) -> Plan:
    """Random chunks plus shifted chunks from the low and high 40 % of the most error-related columns.

    The shifted windows are held out whole when a candidate is cross-validated on them (the candidate is fitted
    on the other rows only), so the shifted chunks test extrapolation into a region, not interpolation.
    """
    n = columns.shape[0]
    chunks = [Chunk(rng.choice(n, size=chunk_size, replace=False), RANDOM) for _ in range(RANDOM_CHUNKS)]
    windows: list[np.ndarray] = []
    size = max(int(n * SHIFT_SHARE), chunk_size)
    for j in shift_directions(columns, target):
        order = np.argsort(np.where(np.isfinite(columns[:, j]), columns[:, j], np.inf), kind="stable")
        for pool in (order[:size], order[n - size:]):
            windows.append(pool)
            for _ in range(SHIFTED_CHUNKS_PER_WINDOW):
                rows = rng.choice(pool, size=min(chunk_size, pool.shape[0]), replace=False)
                chunks.append(Chunk(rows, SHIFTED, len(windows) - 1))
    return Plan(chunks, windows)


def train_rows(train: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A training subsample of at most :data:`MAX_TRAIN_ROWS` rows."""
    return train if train.shape[0] <= MAX_TRAIN_ROWS else np.sort(rng.choice(train, MAX_TRAIN_ROWS, replace=False))


def kfold_indices(n: int, folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled fold assignment: a list of ``folds`` disjoint test index arrays."""
    perm = rng.permutation(n)
    return [perm[i::folds] for i in range(folds)]


def weighted_mae(errors: np.ndarray, kinds: list[str]) -> float:
    """Mean absolute error with random and shifted chunks weighted equally (NaN errors ignored)."""
    parts = []
    for kind in (RANDOM, SHIFTED):
        sel = np.array([k == kind for k in kinds]) & np.isfinite(errors)
        if sel.any():
            parts.append(float(np.mean(np.abs(errors[sel]))))
    return float(np.mean(parts)) if parts else float("nan")


def error_margin(errors: np.ndarray, sds: np.ndarray, z: float) -> float:
    """Margin beyond sampling noise: the 90th percentile of ``max(0, |error| - z * sd)``."""
    ok = np.isfinite(errors)
    if not ok.any():
        return 0.0
    excess = np.maximum(0.0, np.abs(errors[ok]) - z * np.nan_to_num(sds[ok]))
    return float(np.quantile(excess, MARGIN_QUANTILE))
