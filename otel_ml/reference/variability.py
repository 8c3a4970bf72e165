"""Sampling variability of the baselines: how much each evaluation-set metric moves with the rows it averages.

For every baseline in ``metrics.json`` that an alert compares with, the artifact records a **per-row standard
deviation** ``sd``: a window of ``n`` production rows measures the metric with standard error ``sd / sqrt(n)`` when
nothing changed, and the baseline itself (``N`` evaluation rows) has ``sd / sqrt(N)``. The alert rules test
``effect > max(min_effect, z * sd * sqrt(1/n + 1/N))`` (:mod:`otel_ml.alerting.stats`).

* means of per-row values (accuracy and exact match: 0/1; MAE: ``|e|``; MRR: the reciprocal rank; labels per
  sample: the set size): the standard deviation of those values;
* RMSE: the delta method, ``sd(e^2) / (2 RMSE)``;
* macro F1 (classification and multilabel): not a mean of rows, so a bootstrap of the evaluation set
  (:data:`BOOTSTRAP` resamples), scaled to one row: ``sd_bootstrap * sqrt(N)``.

Stored as ``variability.json`` (metric name -> sd) in the artifact; the processor exports it as
``ml.reference.metric_sd``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from otel_ml.estimation import metrics as em
from otel_ml.semconv.attributes import QualityMetric

BOOTSTRAP = 200
"""Resamples of the macro-F1 bootstrap (its sd is within about 5 % of the truth)."""
_CHUNK = 25


def row_sd(values: np.ndarray) -> float:
    """Standard deviation of per-row values (NaN rows ignored; 0 for fewer than two rows)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.std(x, ddof=1)) if x.size > 1 else 0.0


def bootstrap_f1_macro_sd(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *, random_state: int = 0,
                          resamples: int = BOOTSTRAP) -> float:
    """Per-row sd of macro F1 from per-row outcome counts (``(rows, classes)`` arrays of tp, fp, fn).

    Each resample weighs the rows with independent Poisson(1) counts (the Poisson bootstrap: a multinomial
    resample for large data, drawn in chunks so memory stays bounded); the spread of the resampled macro F1, times
    ``sqrt(rows)``, is the per-row sd.

    One class right 80 % of the time, the other never predicted right: macro F1 = F1_a / 2 with
    F1_a = 2p / (1 + p), so the per-row sd is (1 / (1 + p)^2) * sqrt(p (1 - p)) = 0.123 by the delta method:

    >>> rng = np.random.default_rng(0)
    >>> right = rng.random(2000) < 0.8
    >>> tp = np.stack([right, np.zeros(2000)], axis=1).astype(float)
    >>> fp = np.stack([np.zeros(2000), ~right], axis=1).astype(float)
    >>> fn = np.stack([~right, np.zeros(2000)], axis=1).astype(float)
    >>> round(bootstrap_f1_macro_sd(tp, fp, fn), 2)
    0.12
    """
    n = tp.shape[0]
    if n < 2:
        return 0.0
    rng = np.random.default_rng(random_state)
    values: list[float] = []
    for start in range(0, resamples, _CHUNK):
        weights = rng.poisson(1.0, size=(min(_CHUNK, resamples - start), n)).astype(float)
        tps, fps, fns = weights @ tp, weights @ fp, weights @ fn
        values += [em.f1_from_outcomes(a, b, c) for a, b, c in zip(tps, fps, fns, strict=True)]
    finite = np.asarray([v for v in values if math.isfinite(v)])
    return float(np.std(finite, ddof=1) * math.sqrt(n)) if finite.size > 1 else 0.0


def class_outcomes(y: np.ndarray, p: np.ndarray, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row tp, fp, fn indicator matrices ``(rows, classes)`` of single-label predictions (class codes; a code
    outside ``[0, classes)`` counts for no class)."""
    eye = np.vstack([np.eye(classes), np.zeros((1, classes))])
    yi = np.where((y >= 0) & (y < classes), y, classes).astype(int)
    pi = np.where((p >= 0) & (p < classes), p, classes).astype(int)
    truth, pred = eye[yi], eye[pi]
    right = (yi == pi)[:, None]
    tp = truth * pred * right
    return tp, pred - tp, truth - tp


def label_outcomes(truth: Sequence[Sequence[str]], pred: Sequence[Sequence[str]],
                   classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row tp, fp, fn indicator matrices ``(rows, labels)`` of multilabel predictions."""
    index = {c: i for i, c in enumerate(classes)}
    t = np.zeros((len(truth), len(classes)))
    q = np.zeros((len(pred), len(classes)))
    for i, (ts, ps) in enumerate(zip(truth, pred, strict=True)):
        for c in ts:
            if c in index:
                t[i, index[c]] = 1.0
        for c in ps:
            if c in index:
                q[i, index[c]] = 1.0
    tp = t * q
    return tp, q - tp, t - tp


def classification_variability(correct: np.ndarray, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, *,
                               exact_match: bool = False, set_sizes: np.ndarray | None = None,
                               random_state: int = 0) -> dict[str, float]:
    """Per-row sds of a classifier's (or multilabel model's) baselines."""
    out = {QualityMetric.EXACT_MATCH if exact_match else QualityMetric.ACCURACY: row_sd(correct),
           QualityMetric.F1_MACRO: bootstrap_f1_macro_sd(tp, fp, fn, random_state=random_state)}
    if set_sizes is not None:
        out[QualityMetric.LABELS_PER_SAMPLE] = row_sd(set_sizes)
    return out


def regression_variability(errors: np.ndarray) -> dict[str, float]:
    """Per-row sds of MAE and (delta method) RMSE from the signed errors."""
    e = np.asarray(errors, dtype=float)
    e = e[np.isfinite(e)]
    rmse = float(np.sqrt(np.mean(e**2))) if e.size else 0.0
    return {QualityMetric.MAE: row_sd(np.abs(e)),
            QualityMetric.RMSE: row_sd(e**2) / (2 * rmse) if rmse > 0 else 0.0}


def ranking_variability(reciprocal_ranks: np.ndarray, set_sizes: np.ndarray) -> dict[str, float]:
    """Per-row sds of MRR and of the ranked-list length."""
    return {QualityMetric.MRR: row_sd(reciprocal_ranks), QualityMetric.LABELS_PER_SAMPLE: row_sd(set_sizes)}


def proportion_sd(value: float) -> float:
    """``sqrt(p (1 - p))``: the per-row sd of a proportion, for references fitted before variability was recorded."""
    return math.sqrt(value * (1.0 - value)) if 0.0 <= value <= 1.0 else float("nan")


def fallback_variability(metrics: Mapping[str, float]) -> dict[str, float]:
    """What can be derived from the baselines alone: proportions (accuracy, exact match) exactly, and MRR as an
    upper bound (a mean of values in [0, 1] has a per-row variance of at most ``mu (1 - mu)``)."""
    out: dict[str, float] = {}
    for key in (QualityMetric.ACCURACY, QualityMetric.EXACT_MATCH, QualityMetric.MRR):
        value = metrics.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = proportion_sd(float(value))
    return out
