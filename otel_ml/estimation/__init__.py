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
            scores=["p_cat", "p_dog", "p_fox"],      # aligned with classes
            classes=["cat", "dog", "fox"], features=["age", "country"])
    p = est.predict_correctness(analysis_df)         # (n,) P(prediction is correct)
    e = est.estimate(analysis_df)                    # Estimate(metric="accuracy", value, lower, upper, ...)
    all_ = est.estimate_metrics(analysis_df)         # {"accuracy": Estimate, "f1_macro": Estimate}

API (scikit-learn style)
========================

``fit(reference, *, y_true, y_pred, scores=None, features=(), classes=None, task=None) -> self``
    ``reference`` is a pandas DataFrame, one row per prediction; the other arguments name its columns.
    Binary ``scores`` is one column with P(positive = last of ``classes``) or one column per class; multiclass
    ``scores`` is one column per class aligned with ``classes``. Classes are compared as strings (``str(x)``,
    integral floats as ints), exactly as they travel in ``ml.prediction.value``. Multilabel: ``y_true``/``y_pred``
    are label-set columns (lists, JSON lists or ``a|b`` strings) and ``scores`` one column per label aligned with
    ``classes`` (``ml.prediction.scores`` aligned with ``ml.prediction.classes``); ``predict_correctness`` is
    P(exact match) and ``estimate`` the window's ``exact_match``. Regression estimators take
    ``y_true``, ``y_pred`` and ``features`` only. Raises :class:`EstimationError` on missing columns, an empty
    reference, inconsistent scores or a task the estimator does not support.
``predict_correctness(frame) -> np.ndarray``
    Classification: P(correct) per row in [0, 1]. Regression: expected absolute error per row
    (``predict_squared_error`` gives the expected squared error). Only the prediction, score and feature columns
    are read; missing feature columns count as missing values; a predicted class the reference never had is
    estimated from its scores and features alone.
``estimate(frame) -> Estimate``
    The window's estimated accuracy (regression: MAE) with ``lower``/``upper``.
``estimate_metrics(frame, metrics=None) -> dict[str, Estimate]``
    Binary: ``accuracy``, ``f1`` (positive class), ``roc_auc`` (with scores); multiclass: ``accuracy``,
    ``f1_macro``; multilabel: ``exact_match``, ``f1_macro``; regression: ``mae``, ``rmse``.

Intervals
=========

``value -/+ (z * sampling_sd + error_margin + shift_allowance + drift_allowance)`` with ``z`` = 1.645:

* ``sampling_sd``: spread of the realized metric if labels followed the estimated per-row distribution.
  For accuracy it is ``sqrt(sum p(1-p)) / n``, additive across windows and replicas: the processor exports
  ``sum p(1-p)`` as ``ml.estimated.correct_variance``;
* ``error_margin``: the estimator's own error beyond that noise, cross-validated on the reference over random and
  covariate-shifted simulated chunks (the 90th percentile; never below the uncertainty of the reference metric
  itself). The processor exports it as the gauge ``ml.estimator.error_margin``;
* ``shift_allowance``: half the distance of the estimate from the reference metric (estimators see only part of a
  real change; the part they miss grows with it);
* ``drift_allowance``: a quarter of the window's mean feature drift (Jensen-Shannon distance to the reference):
  where traffic leaves the evaluation set's ground, no estimator has evidence.

In PromQL see :mod:`otel_ml.processor.stages.estimation`.

Estimators (registry keys = ``ml.estimator`` values)
=====================================================

``cbpe`` :class:`CalibratedConfidenceEstimator`, ``atc`` :class:`ATCEstimator`, ``learned``
:class:`LearnedCorrectnessEstimator`, ``auto`` :class:`AutoCorrectnessEstimator` (reports the chosen key,
``learned`` or ``cbpe``), for regression ``dle`` :class:`DirectLossEstimator`, and for multilabel ``multilabel``
:class:`MultilabelEstimator` (per-label calibrated probabilities; per-row P(exact match); see
:mod:`otel_ml.estimation.multilabel`). Fitted estimators serialise to
JSON plus scikit-learn objects (:meth:`to_state`), which :mod:`otel_ml.reference` saves with skops, never pickle.
"""

from __future__ import annotations

from typing import Any

from otel_ml.estimation._inputs import ColumnRoles, EstimationError
from otel_ml.estimation.auto import AutoCorrectnessEstimator
from otel_ml.estimation.classification import ClassificationEstimator
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
    "create_estimator",
]
