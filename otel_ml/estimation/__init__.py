"""Label-free quality estimation: how often is the model right when no label has arrived yet?

Every estimator is fitted on a *labeled reference* (the team's evaluation set) and then estimates, for unlabeled
production data, the probability that each prediction is correct (classification) or its expected error
(regression), and window metrics with an interval.

Usage
=====

.. code-block:: python

    from otel_ml.estimation import create_estimator

    est = create_estimator("multiclass")             # automatic choice by cross-validation
    est.fit(reference_df, y_true="label", y_pred="pred",
            scores={"cat": "p_cat", "dog": "p_dog", "fox": "p_fox"},   # or a list aligned with classes
            features=["age", "country"])
    p = est.predict_correctness(analysis_df)         # (n,) P(prediction is correct)
    e = est.estimate(analysis_df)                    # Estimate(metric="accuracy", value, lower, upper, ...)
    all_ = est.estimate_metrics(analysis_df)         # {"accuracy": ..., "f1_macro": ..., "roc_auc": ...}
    est.estimate_metrics(analysis_df, ["f1"])        # {"f1": Estimate(metric="f1_macro", ...)}

API (scikit-learn style)
========================

``fit(reference, *, y_true, y_pred, scores=None, features=(), classes=None, task=None, positive_class=None) -> self``
    ``reference`` is a pandas DataFrame, one row per prediction; the other arguments name its columns.
    ``scores`` is one column name, a list of columns aligned with ``classes``, or a ``{class: column}`` mapping
    (NannyML's ``y_pred_proba``; it gives the classes when ``classes`` is None). Binary: the class order is
    ``[negative, positive]``; the positive class is ``positive_class`` when given, else the last of ``classes``,
    else the last of the sorted class strings (``"1"`` for 0/1 labels, ``"malignant"`` for ``benign``/
    ``malignant``!); a single score column is P(positive class). The orientation is checked: a reference whose
    positive-class ROC AUC, or whose confidence-vs-correctness AUC, is significantly below 0.5, or whose multiclass
    columns are permuted, is refused with an error that says how to fix the column or the class order
    (:mod:`otel_ml.estimation.orientation`; ``orientation_`` after fit). Classes are compared as strings
    (``str(x)``, integral floats as ints), exactly as they travel in ``ml.prediction.value``. Multilabel:
    ``y_true``/``y_pred`` are label-set columns (lists, JSON lists or ``a|b`` strings) and ``scores`` one column
    per label aligned with ``classes`` (``ml.prediction.scores`` aligned with ``ml.prediction.classes``; NaN where
    a label was not scored); ``predict_correctness`` is P(exact match) and ``estimate`` the window's
    ``exact_match``. Regression estimators take ``y_true``, ``y_pred`` and ``features`` only. Raises
    :class:`EstimationError` on missing columns, an empty reference, inconsistent or misoriented scores, a task
    the estimator does not support, or a method the reference cannot support (``learned`` with fewer than 20
    errors, ``atc`` with fewer than 5: the message says why and what to use).
``predict_correctness(frame) -> np.ndarray``
    Classification: P(correct) per row in [0, 1]. Regression: expected absolute error per row
    (``predict_squared_error`` gives the expected squared error). Only the prediction, score and feature columns
    are read; missing feature columns count as missing values (``missing_features(frame)`` counts them per
    feature); a predicted class the reference never had is estimated from its scores and features alone, and a
    row farther from the reference than any of its own rows gets the model's own confidence (the calibration
    has no evidence there). ``predict_rows(frame)`` gives every per-row quantity (:class:`RowEstimates`).
``estimate(frame) -> Estimate``
    The window's estimated accuracy (regression: MAE) with ``lower``/``upper``, ``pessimistic``/``optimistic``.
``estimate_metrics(frame, metrics=None) -> dict[str, Estimate]``
    Binary: ``accuracy``, ``f1`` (positive class), ``roc_auc`` (with scores), ``f1_macro`` on request;
    multiclass: ``accuracy``, ``f1_macro``, ``roc_auc`` (with scores: one-vs-rest, macro over the classes);
    multilabel: ``exact_match``, ``f1_macro``; regression: ``mae``, ``rmse``. Keyed by the names asked for;
    aliases: ``f1`` = ``f1_macro`` on multiclass and multilabel models, ``auc`` = ``roc_auc``, ``macro_f1`` =
    ``f1_macro``, ``accuracy`` = ``exact_match`` on multilabel models (:func:`metrics.canonical_metric`).

Intervals
=========

``value -/+ (z * sampling_sd + z * calibration_sd + error_margin + shift_allowance + drift_allowance)`` with
``z`` = 1.645, then widened to the pessimistic and optimistic bounds:

* ``sampling_sd``: spread of the realized metric if labels followed the estimated per-row distribution.
  For accuracy it is ``sqrt(sum p(1-p)) / n``, additive across windows and replicas: the processor exports
  ``sum p(1-p)`` as ``ml.estimated.correct_variance``;
* ``calibration_sd``: how little the reference knew about the window's predictions: the posterior standard
  deviation of each row's calibrated correctness (its local effective sample size in the reference, see
  :mod:`~otel_ml.estimation.confidence`) beyond the reference rows' own average, averaged over the window
  (``ml.estimated.correct_calibration_sd``). Near 0 on typical traffic; large where a near-perfect reference
  has a handful of rows;
* ``error_margin``: the estimator's own error beyond that noise, cross-validated on the reference over random and
  covariate-shifted simulated chunks (the 90th percentile; never below the uncertainty of the reference metric
  itself). The processor exports it as the gauge ``ml.estimator.error_margin``;
* ``shift_allowance``: half the distance of the estimate from the reference metric (estimators see only part of a
  real change; the part they miss grows with it);
* ``drift_allowance``: a quarter of the window's mean feature drift (Jensen-Shannon distance to the reference; a
  feature the window lacks counts as missing in every row): where traffic leaves the evaluation set's ground, no
  estimator has evidence;
* novelty (:mod:`~otel_ml.estimation.novelty`): predictions of a class the reference never had, and the estimated
  share ``r`` of the other predictions that come from outside the reference's distribution, have unknown
  correctness. ``pessimistic`` counts them wrong (unseen-class rows 0, the rest's estimated correct mass times
  ``1 - r``), ``optimistic`` right, each less/plus ``z * sampling_sd + z * calibration_sd + error_margin``; the
  interval reaches both. ``unknown`` counts the rows of unseen classes or out of support, ``novel_share`` the
  window's estimated novel share. The point estimate stays the calibrated one: feature novelty does not say
  whether the model generalises (on NannyML's covariate-shift sets it does, and the estimate is right to 0.003
  with a quarter of the traffic novel).

In PromQL see :mod:`otel_ml.processor.stages.estimation`.

Estimators (registry keys = ``ml.estimator`` values)
=====================================================

``cbpe`` :class:`CalibratedConfidenceEstimator`, ``atc`` :class:`ATCEstimator`, ``confidence``
:class:`ConfidenceEstimator` (plain average confidence), ``learned`` :class:`LearnedCorrectnessEstimator`,
``auto`` :class:`AutoCorrectnessEstimator` (reports the chosen key: ``cbpe``, ``learned``, ``confidence`` or
``atc``; see :mod:`otel_ml.estimation.auto`), for regression ``dle`` :class:`DirectLossEstimator`, and for
multilabel ``multilabel`` :class:`MultilabelEstimator` (per-label calibrated probabilities; per-row P(exact
match); see :mod:`otel_ml.estimation.multilabel`). Fitted estimators serialise to JSON plus scikit-learn objects
(:meth:`to_state`), which :mod:`otel_ml.reference` saves with skops, never pickle.
"""

from __future__ import annotations

from typing import Any

from otel_ml.estimation._inputs import ColumnRoles, EstimationError
from otel_ml.estimation.auto import AutoCorrectnessEstimator
from otel_ml.estimation.classification import ClassificationEstimator, RowEstimates
from otel_ml.estimation.confidence import ATCEstimator, CalibratedConfidenceEstimator, ConfidenceEstimator
from otel_ml.estimation.estimate import Estimate
from otel_ml.estimation.learned import DirectLossEstimator, LearnedCorrectnessEstimator
from otel_ml.estimation.multilabel import MultilabelEstimator
from otel_ml.estimation.regression import RegressionEstimator
from otel_ml.semconv.attributes import Task

Estimator = ClassificationEstimator | RegressionEstimator | MultilabelEstimator
"""Any fitted estimator."""

ESTIMATORS: dict[str, type[ClassificationEstimator] | type[RegressionEstimator] | type[MultilabelEstimator]] = {
    cls.key: cls
    for cls in (CalibratedConfidenceEstimator, ATCEstimator, ConfidenceEstimator, LearnedCorrectnessEstimator,
                AutoCorrectnessEstimator, DirectLossEstimator, MultilabelEstimator)
}
"""Estimator classes by key."""


def create_estimator(task: str, method: str = "auto", **params: Any) -> Estimator:
    """An unfitted estimator for ``task`` (``binary``, ``multiclass``, ``multilabel``, ``regression``).

    ``method="auto"`` gives :class:`AutoCorrectnessEstimator` for classification, :class:`DirectLossEstimator`
    for regression and :class:`MultilabelEstimator` for multilabel.

    Raises:
        EstimationError: Unknown method or a method that does not support the task.
    """
    if method == "auto" and task == Task.REGRESSION:
        method = DirectLossEstimator.key
    if method == "auto" and task == Task.MULTILABEL:
        method = MultilabelEstimator.key
    cls = ESTIMATORS.get(method)
    if cls is None:
        raise EstimationError(f"unknown estimator {method!r}; known: {sorted(ESTIMATORS)}")
    if task not in cls.tasks:
        raise EstimationError(f"estimator {method!r} does not support task {task!r} (supports {cls.tasks})")
    return cls(**params)


__all__ = [
    "ESTIMATORS",
    "ATCEstimator",
    "AutoCorrectnessEstimator",
    "CalibratedConfidenceEstimator",
    "ClassificationEstimator",
    "ColumnRoles",
    "ConfidenceEstimator",
    "DirectLossEstimator",
    "Estimate",
    "EstimationError",
    "Estimator",
    "LearnedCorrectnessEstimator",
    "MultilabelEstimator",
    "RegressionEstimator",
    "RowEstimates",
    "create_estimator",
]
