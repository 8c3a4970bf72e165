"""Binary ROC-AUC over a window (the one quality metric that does not decompose into sums)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata


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
    ranks = rankdata(s)
    u = float(ranks[t].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)
