"""Per-batch estimation counters: the estimated correctness (or error) of every accepted prediction, per segment.

Classification and multilabel add ``ml.estimated.predictions``, ``ml.estimated.correct_predictions``,
``ml.estimated.correct_variance`` and the expected ``ml.estimated.classification.outcomes``; regression adds the
estimated absolute and squared error and the variance of the summed absolute error. All carry ``ml.estimator``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from otel_ml.estimation import ClassificationEstimator, MultilabelEstimator, RegressionEstimator
from otel_ml.estimation import metrics as em
from otel_ml.estimation.multilabel import expected_label_outcomes
from otel_ml.processor.stage import MetricSink, PredictionBatch
from otel_ml.processor.stages.estimation.frame import batch_frame
from otel_ml.reference.artifact import ReferenceArtifact
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome

Outcomes = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Rows -> expected tp, fp and fn per class of those rows."""


def estimation_counters(batch: PredictionBatch, art: ReferenceArtifact, model_attrs: Mapping[str, str],
                        sink: MetricSink) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Adds the estimated counters of ``batch``; returns P(correct) per row and the expected absolute error per row.

    Either is ``None`` when the artifact's estimator does not give it (no estimator: both).
    """
    est = art.estimator
    if est is None:
        return None, None
    frame = batch_frame(batch, art)
    if isinstance(est, ClassificationEstimator):
        p, class_proba, pred_codes = est.predict_details(frame)
        _correctness_counters(batch, art.classes, est.estimator_key, p,
                              lambda idx: em.expected_outcomes(class_proba[idx], pred_codes[idx]), sink)
        return p, None
    if isinstance(est, MultilabelEstimator):
        p, q, decisions = est.predict_details(frame)
        _correctness_counters(batch, art.classes, est.key, p,
                              lambda idx: expected_label_outcomes(q[idx], decisions[idx]), sink)
        return p, None
    if isinstance(est, RegressionEstimator):
        abs_e = est.predict_correctness(frame)
        sq_e = est.predict_squared_error(frame)
        for seg, idx in _by_segment(batch.segments, len(batch)):
            attrs = _seg_attrs(model_attrs, seg, est.estimator_key)
            sink.add(m.ESTIMATED_PREDICTIONS, float(idx.size), attrs)
            sink.add(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR, float(abs_e[idx].sum()), attrs)
            sink.add(m.ESTIMATED_REGRESSION_SQUARED_ERROR, float(sq_e[idx].sum()), attrs)
            sink.add(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR_VARIANCE,
                     float(np.maximum(sq_e[idx] - abs_e[idx] ** 2, 0.0).sum()), attrs)
        return None, abs_e
    return None, None


def _correctness_counters(batch: PredictionBatch, classes: Sequence[str], key: str, p: np.ndarray,
                          outcomes: Outcomes, sink: MetricSink) -> None:
    """Estimated correct sums, their variance and expected per-class tp/fp/fn, per segment.

    ``outcomes(idx)`` gives the expected tp, fp and fn per class (multiclass: from calibrated class
    probabilities; multilabel: per label) of the rows ``idx``.
    """
    model_attrs = {a.ML_MODEL_NAME: batch.model, a.ML_MODEL_VERSION: batch.version}
    for seg, idx in _by_segment(batch.segments, len(batch)):
        attrs = _seg_attrs(model_attrs, seg, key)
        ps = p[idx]
        sink.add(m.ESTIMATED_PREDICTIONS, float(idx.size), attrs)
        sink.add(m.ESTIMATED_CORRECT_PREDICTIONS, float(ps.sum()), attrs)
        sink.add(m.ESTIMATED_CORRECT_VARIANCE, float(np.sum(ps * (1.0 - ps))), attrs)
        tp, fp, fn = outcomes(idx)
        for c, cls in enumerate(classes):
            for outcome, values in ((Outcome.TP, tp), (Outcome.FP, fp), (Outcome.FN, fn)):
                if values[c] > 0:
                    sink.add(m.ESTIMATED_CLASSIFICATION_OUTCOMES, float(values[c]),
                             {**attrs, a.ML_CLASS: cls, a.ML_OUTCOME: outcome})


def _by_segment(segments: list[str], n: int) -> list[tuple[str, np.ndarray]]:
    if not segments:
        return [("", np.arange(n))]
    arr = np.asarray(segments, dtype=object)
    return [(str(s), np.flatnonzero(arr == s)) for s in dict.fromkeys(segments)]


def _seg_attrs(model_attrs: Mapping[str, str], segment: str, estimator: str) -> dict[str, str]:
    attrs = {**model_attrs, a.ML_ESTIMATOR: estimator}
    if segment:
        attrs[a.ML_SEGMENT] = segment
    return attrs
