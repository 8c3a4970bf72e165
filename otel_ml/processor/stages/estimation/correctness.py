"""Per-batch estimation counters: the estimated correctness (or error) of every accepted prediction, per segment.

Classification and multilabel add ``ml.estimated.predictions``, ``ml.estimated.correct_predictions``,
``ml.estimated.correct_variance`` and the expected ``ml.estimated.classification.outcomes``; regression adds the
estimated absolute and squared error and the variance of the summed absolute error. All carry ``ml.estimator``.

Classification also adds what the estimate does not know: ``ml.estimated.unknown_predictions`` (by ``ml.reason``:
``unseen_class``, ``out_of_support``), ``ml.estimated.pessimistic_correct_predictions`` and
``ml.estimated.optimistic_correct_predictions`` (the interval's ends when part of the traffic is novel, with the
rolling novel share of :class:`~.windows.NoveltyWindow`) and ``ml.estimated.correct_calibration_sd`` (how little
the reference knew about such predictions), and feeds the :class:`~.windows.ScoreWindow` of the estimated ROC AUC.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from otel_ml.estimation import ClassificationEstimator, MultilabelEstimator, RegressionEstimator
from otel_ml.estimation import metrics as em
from otel_ml.estimation.classification import RowEstimates
from otel_ml.estimation.multilabel import expected_label_outcomes
from otel_ml.processor.stage import MetricSink, PredictionBatch
from otel_ml.processor.stages.estimation.artifacts import ModelRuntime
from otel_ml.processor.stages.estimation.frame import batch_frame
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome, UnknownReason

Outcomes = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Rows -> expected tp, fp and fn per class of those rows."""


def estimation_counters(batch: PredictionBatch, rt: ModelRuntime, model_attrs: Mapping[str, str],
                        sink: MetricSink) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Adds the estimated counters of ``batch``; returns P(correct) per row and the expected absolute error per row.

    Either is ``None`` when the artifact's estimator does not give it (no estimator: both).
    """
    art = rt.artifact
    est = art.estimator
    if est is None:
        return None, None
    frame = batch_frame(batch, art)
    if isinstance(est, ClassificationEstimator):
        rows = est.predict_rows(frame)
        _correctness_counters(batch, art.classes, est.estimator_key, rows.p,
                              lambda idx: em.expected_outcomes(rows.class_proba[idx], rows.pred[idx]), sink)
        _novelty_counters(batch, rt, est.estimator_key, rows, sink)
        if rt.scores is not None and rows.scores is not None:  # the window changes once the step committed
            sink.after_commit(functools.partial(rt.scores.extend, rows.scores, rows.class_proba))
        return rows.p, None
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


def _novelty_counters(batch: PredictionBatch, rt: ModelRuntime, key: str, rows: RowEstimates,
                      sink: MetricSink) -> None:
    """Unknown-correctness counts, pessimistic and optimistic correctness, calibration uncertainty, per segment."""
    known = rows.novelty[~rows.unseen]
    r = rt.novelty.novel_share(pending=known)  # the window changes only once the step committed
    sink.after_commit(functools.partial(rt.novelty.extend, known))
    pessimistic = np.where(rows.unseen, 0.0, rows.p * (1.0 - r))
    optimistic = np.where(rows.unseen, 1.0, rows.p + r * (1.0 - rows.p))
    model_attrs = {a.ML_MODEL_NAME: batch.model, a.ML_MODEL_VERSION: batch.version}
    for seg, idx in _by_segment(batch.segments, len(batch)):
        attrs = _seg_attrs(model_attrs, seg, key)
        sink.add(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS, float(pessimistic[idx].sum()), attrs)
        sink.add(m.ESTIMATED_OPTIMISTIC_CORRECT_PREDICTIONS, float(optimistic[idx].sum()), attrs)
        sink.add(m.ESTIMATED_CORRECT_CALIBRATION_SD, float(rows.calibration_sd[idx].sum()), attrs)
        for reason, mask in ((UnknownReason.UNSEEN_CLASS, rows.unseen), (UnknownReason.OUT_OF_SUPPORT,
                                                                          rows.out_of_support)):
            count = int(mask[idx].sum())
            if count:
                sink.add(m.ESTIMATED_UNKNOWN_PREDICTIONS, float(count), {**attrs, a.ML_REASON: reason})


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
