"""Binary ROC-AUC over a window (the one quality metric that does not decompose into sums)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks, ties given their average rank (``scipy.stats.rankdata(s)``, without importing scipy: its
    import took 60 % of the processor's start-up)."""
    order = np.argsort(s, kind="mergesort")
    ordered = s[order]
    bounds = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat((bounds[:-1] + bounds[1:] + 1) / 2.0, np.diff(bounds))
    return ranks


def roc_auc_score(y_true: ArrayLike, y_score: ArrayLike) -> float:
    """ROC-AUC via the Mann-Whitney U statistic (ties count one half, as ``sklearn.metrics.roc_auc_score``).

    Args:
        y_true: Booleans (or 0/1): whether each sample is of the positive class.
        y_score: Scores, higher meaning more positive.

    Returns:
        The AUC in [0, 1]; NaN when the window has a single class (sklearn raises there).

    Example:
        >>> roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    t = np.asarray(y_true, dtype=bool)
    s = np.asarray(y_score, dtype=np.float64)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    u = float(ranks[t].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)
