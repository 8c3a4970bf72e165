"""Window metrics: realized (with labels) and expected (from per-row class probabilities), plus sampling spreads.

Expected metrics follow the idea of NannyML's CBPE: with a calibrated distribution over the true class of every row,
the expected confusion counts are sums of probabilities, so they are additive (the processor exports them as
counters) and any window's estimated precision, recall and F1 are ratios of those sums. The sampling spread of a
window's *realized* metric around its expectation is computed analytically for accuracy (the sum of p(1-p)) and by a
seeded Monte Carlo draw of labels for F1 and ROC-AUC.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

from otel_ml.semconv.attributes import QualityMetric, Task

ACCURACY = QualityMetric.ACCURACY
F1 = QualityMetric.F1
F1_MACRO = QualityMetric.F1_MACRO
ROC_AUC = QualityMetric.ROC_AUC
MAE = QualityMetric.MAE
RMSE = QualityMetric.RMSE

BINARY_METRICS = (ACCURACY, F1, ROC_AUC)
MULTICLASS_METRICS = (ACCURACY, F1_MACRO, ROC_AUC)
REGRESSION_METRICS = (MAE, RMSE)

METRIC_ALIASES: dict[str, str] = {
    "auc": ROC_AUC, "roc-auc": ROC_AUC, "rocauc": ROC_AUC, "roc_auc_ovr": ROC_AUC, "macro_f1": F1_MACRO,
    "f1-macro": F1_MACRO, "acc": ACCURACY,
}
"""Other names users write for a metric (case-insensitive). Plus, by task: ``f1`` on a multiclass or multilabel
model is ``f1_macro`` (there is no positive class); ``accuracy`` on a multilabel model is ``exact_match``;
``roc_auc`` on a multiclass model is one-vs-rest, macro-averaged."""


def canonical_metric(name: str, task: str) -> str:
    """The canonical metric name behind ``name`` for ``task`` (unknown names are returned lower-cased)."""
    key = str(name).strip().lower()
    key = METRIC_ALIASES.get(key, key)
    if key == F1 and task in (Task.MULTICLASS, Task.MULTILABEL):
        return F1_MACRO
    if key == ACCURACY and task == Task.MULTILABEL:
        return QualityMetric.EXACT_MATCH
    return key


def class_probabilities(p_correct: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, k: int) -> np.ndarray:
    """Distribution over the true class per row, consistent with P(correct).

    The predicted class gets ``p_correct``; the remaining mass goes to the other classes in proportion to the model's
    own scores (uniformly without scores). Rows with an unseen predicted class spread all mass over the known classes.
    """
    n = p_correct.shape[0]
    if proba is None:
        other = np.ones((n, k))
    else:
        other = proba.astype(float, copy=True)
    known = pred >= 0
    rows = np.arange(n)
    other[rows[known], pred[known]] = 0.0
    total = other.sum(axis=1, keepdims=True)
    other = np.where(total > 0, other / np.where(total > 0, total, 1.0), 1.0 / max(k - 1, 1))
    if k > 1:
        other[rows[known], pred[known]] = 0.0
    rest = np.where(known, 1.0 - p_correct, 1.0)[:, None]
    out = other * rest
    out[rows[known], pred[known]] = p_correct[known]
    return out


def expected_outcomes(class_proba: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected per-class (tp, fp, fn) sums, each of shape ``(k,)``."""
    k = class_proba.shape[1]
    known = pred >= 0
    p_pred = np.zeros(class_proba.shape[0])
    p_pred[known] = class_proba[np.flatnonzero(known), pred[known]]
    tp = np.bincount(pred[known], weights=p_pred[known], minlength=k)
    predicted = np.bincount(pred[known], minlength=k).astype(float)
    fp = predicted - tp
    fn = class_proba.sum(axis=0) - tp
    return tp, fp, np.maximum(fn, 0.0)


def realized_outcomes(y_true: np.ndarray, pred: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Realized per-class (tp, fp, fn) counts from true and predicted class codes (``-1`` = unknown class)."""
    hit = (y_true == pred) & (pred >= 0)
    tp = np.bincount(pred[hit], minlength=k).astype(float)
    fp = np.bincount(pred[pred >= 0], minlength=k).astype(float) - tp
    fn = np.bincount(y_true[y_true >= 0], minlength=k).astype(float) - tp
    return tp, fp, fn


def f1_from_outcomes(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, positive: int | None = None) -> float:
    """F1 of the positive class (``positive`` given) or macro F1 over the classes present (tp+fp+fn >= 0.5).

    Like scikit-learn's ``zero_division=0``: a present class with no true positive scores 0. NaN when no class is
    present.
    """
    denom = 2 * tp + fp + fn
    if positive is not None:
        return float(2 * tp[positive] / denom[positive]) if denom[positive] > 0 else 0.0
    present = (tp + fp + fn) >= 0.5
    if not present.any():
        return float("nan")
    f1 = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1.0), 0.0)
    return float(f1[present].mean())


def expected_roc_auc(score_pos: np.ndarray, q_pos: np.ndarray) -> float:
    """Expected ROC-AUC: pairs weighted by P(i positive) P(j negative), ordered by the model's score (ties 1/2)."""
    n = score_pos.shape[0]
    if n < 2:
        return float("nan")
    order = np.argsort(score_pos, kind="mergesort")
    s, q = score_pos[order], q_pos[order]
    neg = 1.0 - q
    # Sum of (1 - q_j) over j with a strictly smaller score, and over ties (each tie counts half; self excluded).
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    cum_neg = np.concatenate([[0.0], np.cumsum(neg)])
    below = np.repeat(cum_neg[start], counts)
    tie_sum = np.repeat(cum_neg[start + counts] - cum_neg[start], counts) - neg
    num = float(np.sum(q * (below + 0.5 * tie_sum)))
    total_q = float(q.sum())
    den = total_q * (n - total_q) - float(np.sum(q * neg))
    return num / den if den > 1e-12 else float("nan")


def expected_roc_auc_ovr(scores: np.ndarray, class_proba: np.ndarray) -> float:
    """Expected one-vs-rest ROC-AUC, macro-averaged over the classes with expected positives and negatives
    (at least one of each): per class ``c``, :func:`expected_roc_auc` of score column ``c`` with P(true = c)."""
    n, k = class_proba.shape
    values = []
    for c in range(k):
        q = class_proba[:, c]
        total = float(q.sum())
        if total >= 1.0 and n - total >= 1.0:
            v = expected_roc_auc(scores[:, c], q)
            if np.isfinite(v):
                values.append(v)
    return float(np.mean(values)) if values else float("nan")


def realized_roc_auc_ovr(y: np.ndarray, scores: np.ndarray) -> float:
    """One-vs-rest ROC-AUC macro-averaged over the classes present in ``y`` (codes; ``-1`` ignored) that are not
    all of it (scikit-learn's ``roc_auc_score(multi_class="ovr", average="macro")`` when every class is present)."""
    values = [realized_roc_auc(y == c, scores[:, c]) for c in range(scores.shape[1])]
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def realized_roc_auc(y_pos: np.ndarray, score_pos: np.ndarray) -> float:
    """ROC-AUC from booleans and scores (Mann-Whitney); NaN when one class is absent."""
    pos = int(y_pos.sum())
    neg = y_pos.shape[0] - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(score_pos)
    return float((ranks[y_pos].sum() - pos * (pos + 1) / 2) / (pos * neg))


def accuracy_sd(p_correct: np.ndarray) -> float:
    """Standard deviation of a window's realized accuracy given independent per-row P(correct)."""
    n = p_correct.shape[0]
    return float(np.sqrt(np.sum(p_correct * (1.0 - p_correct))) / n) if n else float("nan")


def simulated_sd(
    class_proba: np.ndarray,
    pred: np.ndarray,
    score_pos: np.ndarray | None,
    metric: str,
    *,
    positive: int | None,
    rng: np.random.Generator,
    draws: int = 200,
) -> float:
    """Monte Carlo standard deviation of a window's realized F1 or ROC-AUC when labels follow ``class_proba``.

    ``score_pos``: binary, the positive-class score ``(n,)`` (with ``positive``); multiclass ROC-AUC, the scores
    ``(n, k)`` (one-vs-rest, macro).
    """
    n, k = class_proba.shape
    if n == 0:
        return float("nan")
    draws = max(20, min(draws, int(4e6 // max(n * k, 1))))
    cum = np.cumsum(class_proba, axis=1)
    cum /= np.where(cum[:, -1:] > 0, cum[:, -1:], 1.0)
    u = rng.random((draws, n))
    y = (u[:, :, None] > cum[None, :, :-1]).sum(axis=2)
    values = np.empty(draws)
    if metric == ROC_AUC and score_pos is not None and score_pos.ndim == 2:
        per_class = np.full((draws, k), np.nan)
        for c in range(k):
            y_pos = y == c
            pos = y_pos.sum(axis=1).astype(float)
            neg = n - pos
            with np.errstate(invalid="ignore", divide="ignore"):
                auc = (y_pos @ rankdata(score_pos[:, c]) - pos * (pos + 1) / 2) / (pos * neg)
            per_class[:, c] = np.where((pos > 0) & (neg > 0), auc, np.nan)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = np.nanmean(per_class, axis=1)
    elif metric == ROC_AUC:
        if score_pos is None or positive is None:
            return float("nan")
        ranks = rankdata(score_pos)
        y_pos = y == positive
        pos = y_pos.sum(axis=1).astype(float)
        neg = n - pos
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (y_pos @ ranks - pos * (pos + 1) / 2) / (pos * neg)
    else:
        for b in range(draws):
            values[b] = f1_from_outcomes(*realized_outcomes(y[b], pred, k), positive=positive)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.shape[0] > 2 else float("nan")
