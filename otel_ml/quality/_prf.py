"""Precision, recall and F1 from per-class tp/fp/fn counts (scikit-learn semantics, ``zero_division=0``)."""

from __future__ import annotations

from collections.abc import Mapping


def _div(num: float, den: float) -> float:
    return num / den if den else 0.0


def prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall, F1 of one class; 0 where undefined (sklearn ``zero_division=0``)."""
    return _div(tp, tp + fp), _div(tp, tp + fn), _div(2 * tp, 2 * tp + fp + fn)


def averaged(outcomes: Mapping[str, tuple[float, float, float]], average: str) -> tuple[float, float, float]:
    """``macro`` (unweighted mean over classes present in predictions or labels) or ``micro`` (pooled counts).

    Matches ``sklearn.metrics.precision_recall_fscore_support(average=...)`` with ``zero_division=0`` over the labels
    seen in ``y_true`` or ``y_pred``.
    """
    if not outcomes:
        return 0.0, 0.0, 0.0
    if average == "micro":
        tp = sum(o[0] for o in outcomes.values())
        fp = sum(o[1] for o in outcomes.values())
        fn = sum(o[2] for o in outcomes.values())
        return prf(tp, fp, fn)
    if average != "macro":
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")
    scores = [prf(*o) for o in outcomes.values()]
    n = len(scores)
    return sum(s[0] for s in scores) / n, sum(s[1] for s in scores) / n, sum(s[2] for s in scores) / n
