"""Novelty: how far a prediction's inputs lie from the reference, and how much of a window is novel.

A correctness estimate is learned from the reference; for inputs unlike anything in it (a class the model never
saw, a unit bug, a new population) the reference says nothing, and calibrated confidence can stay high while the
model is wrong. This module measures that distance so the estimate can say what it does not know.

:class:`SupportModel` (fitted on the reference's features, saved as JSON inside the estimator):

* features are standardised (numeric: centred on the median, divided by the standard deviation floored at half the
  median standard deviation, so near-constant columns do not dominate; missing values at the centre) and
  one-hot encoded (categorical: the :data:`MAX_ONE_HOT` most frequent categories, a value outside them is all
  zeros); at most :data:`MAX_DIMENSIONS` columns;
* :data:`PROTOTYPES` k-means prototypes of the reference rows summarise where the reference lies; a row's *novelty
  distance* is its distance to the nearest prototype (cost per row: ``prototypes x columns`` multiply-adds);
* the null distribution is the distance of every reference row to prototypes fitted *without* it (4-fold), so a
  new row from the reference's distribution has a uniformly distributed *novelty p-value*: the share of held-out
  reference distances at least as large as its own.

Per row, a distance beyond every held-out reference distance (the smallest p-value, :attr:`SupportModel.floor`)
counts as *out of support*: far outside everything the reference has (about one in ``reference rows + 1`` of
in-distribution rows by construction). Per window, :func:`novel_share` estimates the share of
rows that come from outside the reference's distribution: with novel rows' p-values concentrated near 0,
``(share below alpha - alpha) / (1 - alpha)`` is an estimate of that share which is low (conservative) by the
detector's miss rate; the largest over :data:`ALPHAS`, less one standard error of sampling noise, is used (the
mixture-proportion estimate of Blanchard, Lee & Scott, "Semi-supervised novelty detection", JMLR 2010).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

PROTOTYPES = 64
"""k-means prototypes (fewer for small references: one per 10 rows)."""
MAX_ONE_HOT = 20
"""Categories one-hot encoded per categorical feature."""
MAX_DIMENSIONS = 256
"""Encoded columns kept (numeric features first, then one-hot blocks) to bound the cost per row."""
MAX_FIT_ROWS = 5000
"""Reference rows the prototypes are fitted on (a random sample above this)."""
MIN_ROWS = 50
"""Below this many reference rows no support model is fitted (novelty unknown: p-values are NaN)."""
NULL_QUANTILES = 1000
"""Held-out distances kept (as quantiles) for the p-values."""
ALPHAS = (0.2, 0.1, 0.05, 0.01)
"""p-value thresholds of the window novel-share estimate: the reference's 20 % tail and beyond.

Not 0.5: the less typical half of the reference responds to any mild shift of any feature. With it, NannyML's
synthetic work-from-home set (a covariate shift its calibrated model handles, estimate off by 0.003) counted half
its drifted traffic as novel and its band widened to 0.30; without it, 0.19. Classes the model never saw still
register (digits with a withheld class: band covers 10 chunks of 10 with 0.5, 10 of 10 without; see
benchmarks/README.md)."""
NOISE_Z = 1.0
"""Standard errors of sampling noise subtracted from each threshold's share estimate."""
FOLDS = 4


def _nearest(prototypes: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Euclidean distance of each row of ``z`` to its nearest prototype."""
    if z.shape[0] == 0:
        return np.empty(0)
    d2 = (z**2).sum(axis=1)[:, None] - 2.0 * z @ prototypes.T + (prototypes**2).sum(axis=1)[None, :]
    return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


def _kmeans(z: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    k = max(1, min(k, z.shape[0]))
    with threadpool_limits(limits=1):
        return np.asarray(KMeans(k, n_init=2, random_state=seed).fit(z).cluster_centers_, dtype=float)


@dataclass
class SupportModel:
    """Where the reference's features lie (see the module docstring). JSON-serialisable.

    Attributes:
        columns: Encoded-feature indices used: numeric columns of the feature matrix, in order.
        center: Centre of each numeric column.
        scale: Scale of each numeric column.
        categorical: ``[(column index, [category codes one-hot encoded])]``.
        prototypes: ``(k, d)`` prototypes in the standardised space.
        null: Sorted held-out novelty distances of reference rows (quantiles).
    """

    columns: list[int]
    center: list[float]
    scale: list[float]
    categorical: list[tuple[int, list[int]]]
    prototypes: np.ndarray
    null: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, categorical: Sequence[bool], *, random_state: int = 0) -> SupportModel | None:
        """Fits on the reference's encoded feature matrix ``X`` (``(n, f)``; categorical columns hold codes).

        Returns None without features or with fewer than :data:`MIN_ROWS` rows.
        """
        n, f = X.shape
        if f == 0 or n < MIN_ROWS:
            return None
        rng = np.random.default_rng(random_state)
        numeric = [j for j in range(f) if not categorical[j]]
        center, scale = [], []
        for j in numeric:
            col = X[:, j][np.isfinite(X[:, j])]
            center.append(float(np.median(col)) if col.size else 0.0)
            scale.append(float(col.std()) if col.size else 0.0)
        positive = [s for s in scale if s > 0]
        floor = 0.5 * float(np.median(positive)) if positive else 1.0
        scale = [max(s, floor) for s in scale]
        cats: list[tuple[int, list[int]]] = []
        budget = MAX_DIMENSIONS - len(numeric)
        for j in range(f):
            if not categorical[j] or budget <= 0:
                continue
            codes = X[:, j][np.isfinite(X[:, j])].astype(int)
            if codes.size == 0:
                continue
            values, counts = np.unique(codes, return_counts=True)
            keep = [int(v) for v in values[np.argsort(-counts, kind="stable")][:min(MAX_ONE_HOT, budget)]]
            cats.append((j, keep))
            budget -= len(keep)
        model = cls(numeric[:MAX_DIMENSIONS], center[:MAX_DIMENSIONS], scale[:MAX_DIMENSIONS], cats,
                    np.zeros((0, 0)), np.zeros(0))
        z = model.transform(X)
        if n > MAX_FIT_ROWS:
            z = z[rng.choice(n, MAX_FIT_ROWS, replace=False)]
        k = min(PROTOTYPES, max(2, z.shape[0] // 10))
        fold = rng.permutation(z.shape[0]) % FOLDS
        held_out = np.empty(z.shape[0])
        for i in range(FOLDS):
            held_out[fold == i] = _nearest(_kmeans(z[fold != i], k, random_state), z[fold == i])
        model.prototypes = _kmeans(z, k, random_state)
        qs = np.linspace(0.0, 1.0, min(NULL_QUANTILES, held_out.size))
        model.null = np.sort(np.quantile(held_out, qs)) if held_out.size > NULL_QUANTILES else np.sort(held_out)
        return model

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Standardised and one-hot encoded rows ``(n, d)``."""
        n = X.shape[0]
        parts = []
        if self.columns:
            num = (X[:, self.columns] - np.asarray(self.center)) / np.asarray(self.scale)
            parts.append(np.nan_to_num(num, nan=0.0, posinf=1e6, neginf=-1e6))
        for j, codes in self.categorical:
            block = np.zeros((n, len(codes)))
            col = X[:, j]
            for i, code in enumerate(codes):
                block[:, i] = col == code
            parts.append(block * math.sqrt(0.5))  # a category mismatch weighs like one standard deviation
        return np.hstack(parts) if parts else np.zeros((n, 0))

    def distance(self, X: np.ndarray) -> np.ndarray:
        """Novelty distance of each row (to the nearest prototype)."""
        return _nearest(self.prototypes, self.transform(X))

    def pvalues(self, X: np.ndarray) -> np.ndarray:
        """Novelty p-value of each row: the share of held-out reference rows at least as far from the reference.

        Near 0: unlike the reference; uniform over (0, 1] for rows from the reference's distribution. NaN for a row
        without any feature value (nothing to compare: features not sent, or sampled out).
        """
        d = self.distance(X)
        m = self.null.size
        out = (m - np.searchsorted(self.null, d, side="left") + 1.0) / (m + 1.0)
        used = self.columns + [j for j, _ in self.categorical]
        if used and X.shape[0]:
            out[np.isnan(X[:, used]).all(axis=1)] = np.nan
        return out

    @property
    def floor(self) -> float:
        """The smallest p-value: a row farther from the reference than every held-out reference row."""
        return 1.0 / (self.null.size + 1.0)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"columns": self.columns, "center": self.center, "scale": self.scale,
                "categorical": [[j, codes] for j, codes in self.categorical],
                "prototypes": self.prototypes.tolist(), "null": self.null.tolist()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SupportModel:
        """Inverse of :meth:`to_json`."""
        return cls([int(j) for j in data["columns"]], [float(x) for x in data["center"]],
                   [float(x) for x in data["scale"]],
                   [(int(j), [int(c) for c in codes]) for j, codes in data["categorical"]],
                   np.asarray(data["prototypes"], dtype=float).reshape(len(data["prototypes"]), -1),
                   np.asarray(data["null"], dtype=float))


def below_counts(pvalues: np.ndarray) -> dict[float, int]:
    """Rows with a novelty p-value below each of :data:`ALPHAS` (NaN p-values count nowhere)."""
    return {alpha: int(np.sum(pvalues < alpha)) for alpha in ALPHAS}


def novel_share_from_counts(below: Mapping[float, float], n: float, z: float = NOISE_Z) -> float:
    """The window novel-share estimate (module docstring) from :func:`below_counts` over ``n`` rows.

    0 for an empty window; in [0, 1].
    """
    if n <= 0:
        return 0.0
    best = 0.0
    for alpha in ALPHAS:
        share = below.get(alpha, 0.0) / n
        noise = z * math.sqrt(alpha * (1 - alpha) / n)
        best = max(best, (share - alpha - noise) / (1 - alpha))
    return float(min(best, 1.0))


def novel_share(pvalues: np.ndarray, z: float = NOISE_Z) -> float:
    """Estimated share of rows from outside the reference's distribution (NaN p-values are ignored)."""
    p = pvalues[np.isfinite(pvalues)]
    return novel_share_from_counts(below_counts(p), float(p.size), z)
