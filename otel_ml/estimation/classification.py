"""Correctness estimators of binary and multiclass models: the shared fit, window estimates and margins.

Subclasses (:mod:`~otel_ml.estimation.confidence`, :mod:`~otel_ml.estimation.learned`,
:mod:`~otel_ml.estimation.auto`) implement ``_fit_core`` and ``_predict_core`` on prepared arrays; this class turns
P(correct) into window metrics (accuracy, F1, ROC-AUC) with intervals and learns its cross-validated margins
(:mod:`~otel_ml.estimation.margins`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from otel_ml.estimation import _chunks as ch
from otel_ml.estimation import metrics as m
from otel_ml.estimation._inputs import ClassificationInputs, EstimationError, class_codes, prepare_classification
from otel_ml.estimation.estimate import Estimate, interval
from otel_ml.estimation.estimator import EstimatorBase
from otel_ml.estimation.margins import (
    MIN_CV_ROWS,
    ChunkErrors,
    chunk_predictions,
    held_out,
    margins,
    out_of_fold,
    reference_floor,
)
from otel_ml.semconv.attributes import Task


class ClassificationEstimator(EstimatorBase):
    """Base of correctness estimators for binary and multiclass models.

    Subclasses implement ``_fit_core(inputs, correct)`` and ``_predict_core(inputs) -> P(correct)``; optionally
    ``available(inputs, correct)`` (whether the reference holds enough evidence to use the method).
    """

    tasks: ClassVar[tuple[str, ...]] = Task.CLASSIFICATION

    # --- subclass hooks ----------------------------------------------------------------------------------------
    @classmethod
    def available(cls, inputs: ClassificationInputs, correct: np.ndarray) -> bool:
        """Whether the method can be fitted on this reference."""
        return True

    def _fit_core(self, inputs: ClassificationInputs, correct: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_core(self, inputs: ClassificationInputs) -> np.ndarray:
        raise NotImplementedError

    # --- public API --------------------------------------------------------------------------------------------
    def fit(self, reference: pd.DataFrame, *, y_true: str, y_pred: str, scores: str | Sequence[str] | None = None,
            features: Sequence[str] = (), classes: Sequence[Any] | None = None, task: str | None = None) -> Self:
        """Fits on a labeled reference (evaluation set).

        Args:
            reference: One row per prediction.
            y_true: Column of the true class.
            y_pred: Column of the predicted class.
            scores: Binary: the column of P(positive = last class), or one column per class; multiclass: one column
                per class aligned with ``classes``. None when the model gives no scores.
            features: Feature columns (numeric or categorical) for learned estimators.
            classes: Class order (default: sorted union of true and predicted classes, as strings).
            task: ``binary`` or ``multiclass`` (inferred from the number of classes when None).

        Returns:
            self

        Raises:
            EstimationError: Missing columns, empty reference, inconsistent scores or an unsupported task.
        """
        roles = self._resolve(reference, y_true, y_pred, scores, features, classes, task)
        inputs = prepare_classification(reference, roles, self.encoder_)
        y = class_codes(reference[y_true].to_numpy(), roles.classes)
        if not self.available(inputs, inputs.pred == y):
            raise EstimationError(f"{self.key}: the reference does not support this method "
                                  "(no scores, or too few errors to learn from); use the automatic estimator")
        self._fit_prepared(inputs, y)
        return self

    def predict_correctness(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row probability that the prediction is correct, shape ``(n,)``, values in [0, 1]."""
        return self._predict_core(self._prepare(frame))

    def predict_class_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row distribution over the true class ``(n, k)``, aligned with ``roles_.classes``."""
        inputs = self._prepare(frame)
        return m.class_probabilities(self._predict_core(inputs), inputs.pred, inputs.proba, len(self.roles_.classes))

    def predict_details(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(correct) ``(n,)``, the distribution over the true class ``(n, k)`` and the predicted class codes
        ``(n,)`` (``-1`` for a class the reference never had): what the processor turns into counters."""
        inputs = self._prepare(frame)
        p = self._predict_core(inputs)
        return p, m.class_probabilities(p, inputs.pred, inputs.proba, len(self.roles_.classes)), inputs.pred

    def estimate(self, frame: pd.DataFrame) -> Estimate:
        """Estimated accuracy of the window ``frame`` with its interval."""
        return self.estimate_metrics(frame, metrics=(m.ACCURACY,))[m.ACCURACY]

    def estimate_metrics(self, frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> dict[str, Estimate]:
        """Estimated window metrics: accuracy, F1 (binary: positive class; multiclass: macro) and, for binary
        models with scores, ROC-AUC."""
        inputs = self._prepare(frame)
        return self._estimate_prepared(inputs, self._predict_core(inputs), metrics, self._drift_allowance(frame))

    # --- internals ---------------------------------------------------------------------------------------------
    def _prepare(self, frame: pd.DataFrame) -> ClassificationInputs:
        self._check_fitted()
        return prepare_classification(frame, self.roles_, self.encoder_)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Metrics this estimator estimates."""
        if self.roles_.task == Task.BINARY:
            return m.BINARY_METRICS if self.roles_.scores else (m.ACCURACY, m.F1)
        return m.MULTICLASS_METRICS

    @property
    def _positive(self) -> int | None:
        return len(self.roles_.classes) - 1 if self.roles_.task == Task.BINARY else None

    def _window_values(self, inputs: ClassificationInputs, p: np.ndarray, metrics: Sequence[str],
                       rng: np.random.Generator | None) -> dict[str, tuple[float, float]]:
        """(expected value, sampling sd) per metric; sd computed only when ``rng`` is given."""
        n, k = len(inputs), len(self.roles_.classes)
        out: dict[str, tuple[float, float]] = {}
        if n == 0:
            return {name: (float("nan"), float("nan")) for name in metrics}
        cp = m.class_probabilities(p, inputs.pred, inputs.proba, k)
        pos = self._positive
        score = None if inputs.proba is None or pos is None else inputs.proba[:, pos]
        for name in metrics:
            if name == m.ACCURACY:
                out[name] = (float(p.mean()), m.accuracy_sd(p))
                continue
            if name in (m.F1, m.F1_MACRO):
                value = m.f1_from_outcomes(*m.expected_outcomes(cp, inputs.pred), positive=pos)
            elif name == m.ROC_AUC and score is not None and pos is not None:
                value = m.expected_roc_auc(score, cp[:, pos])
            else:
                continue
            sd = float("nan") if rng is None else m.simulated_sd(cp, inputs.pred, score, name, positive=pos, rng=rng)
            out[name] = (value, sd)
        return out

    def _estimate_prepared(self, inputs: ClassificationInputs, p: np.ndarray,
                           metrics: Sequence[str] | None, drift: float = 0.0) -> dict[str, Estimate]:
        names = tuple(metrics) if metrics is not None else self.metric_names
        unknown = [x for x in names if x not in self.metric_names]
        if unknown:
            raise EstimationError(f"cannot estimate {unknown}; this estimator supports {list(self.metric_names)}")
        rng = np.random.default_rng(self.random_state)
        values = self._window_values(inputs, p, names, rng)
        return {
            name: interval(name, v, sd, self.error_margin_.get(name, 0.0), len(inputs), self.estimator_key, self.z,
                           self._reference_value(name), drift)
            for name, (v, sd) in values.items()
        }

    def _realized(self, inputs: ClassificationInputs, y: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
        k, pos = len(self.roles_.classes), self._positive
        out: dict[str, float] = {}
        for name in metrics:
            if name == m.ACCURACY:
                out[name] = float(np.mean(inputs.pred == y))
            elif name in (m.F1, m.F1_MACRO):
                out[name] = m.f1_from_outcomes(*m.realized_outcomes(y, inputs.pred, k), positive=pos)
            elif name == m.ROC_AUC and inputs.proba is not None and pos is not None:
                out[name] = m.realized_roc_auc(y == pos, inputs.proba[:, pos])
        return out

    def _fit_clone(self, inputs: ClassificationInputs, correct: np.ndarray, rows: np.ndarray) -> Self:
        est = self._clone()
        est.roles_, est.encoder_ = self.roles_, self.encoder_
        est._fit_core(inputs.take(rows), correct[rows])
        return est

    def _plan(self, inputs: ClassificationInputs, correct: np.ndarray, rng: np.random.Generator) -> ch.Plan:
        columns = np.column_stack([inputs.X, inputs.confidence()]) if inputs.proba is not None else inputs.X
        size = self.chunk_size or ch.default_chunk_size(len(inputs))
        return ch.plan_chunks(columns, correct, min(size, len(inputs)), rng)

    def _cv_predictions(self, inputs: ClassificationInputs, correct: np.ndarray, folds: list[np.ndarray],
                        plan: ch.Plan) -> tuple[list[np.ndarray], np.ndarray]:
        """P(correct) on the rows of every simulated chunk, each from a fit that did not see those rows (k-fold
        out-of-fold for random chunks, a fit without the whole window for shifted chunks), and the k-fold
        out-of-fold P(correct) of every reference row."""
        rng = np.random.default_rng(self.random_state)

        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            return self._fit_clone(inputs, correct, train)._predict_core(inputs.take(test))

        oof = out_of_fold(len(inputs), folds, fit_predict, rng)
        return chunk_predictions(plan, oof, held_out(len(inputs), plan, fit_predict, rng)), oof

    def _chunk_errors(self, inputs: ClassificationInputs, y: np.ndarray, preds: list[np.ndarray], plan: ch.Plan,
                      metrics: Sequence[str],
                      rng: np.random.Generator | None) -> ChunkErrors:
        """Per metric: (estimate - realized, sampling sd) on each chunk."""
        count = len(plan.chunks)
        errors = {name: (np.full(count, np.nan), np.full(count, np.nan)) for name in metrics}
        for i, (chunk, p) in enumerate(zip(plan.chunks, preds, strict=True)):
            sub = inputs.take(chunk.rows)
            est = self._window_values(sub, p, metrics, rng)
            real = self._realized(sub, y[chunk.rows], metrics)
            for name, (value, sd) in est.items():
                errors[name][0][i] = value - real.get(name, float("nan"))
                errors[name][1][i] = sd
        return errors

    def _start(self, inputs: ClassificationInputs, y: np.ndarray) -> tuple[np.ndarray, float]:
        correct = inputs.pred == y
        self.reference_ = {"rows": len(inputs), "errors": int((~correct).sum()),
                           **self._realized(inputs, y, self.metric_names)}
        floor = reference_floor(float(correct.mean()), correct.shape[0])
        self.error_margin_ = {name: floor for name in self.metric_names}
        self.cv_: dict[str, float] = {}
        return correct, floor

    def _fit_prepared(self, inputs: ClassificationInputs, y: np.ndarray) -> None:
        correct, floor = self._start(inputs, y)
        if len(inputs) >= MIN_CV_ROWS:
            rng = np.random.default_rng(self.random_state)
            folds = ch.kfold_indices(len(inputs), self.cv_folds, rng)
            plan = self._plan(inputs, correct, rng)
            self._set_margins(inputs, y, self._cv_predictions(inputs, correct, folds, plan)[0], plan, floor)
        self._fit_core(inputs, correct)

    def _set_margins(self, inputs: ClassificationInputs, y: np.ndarray, preds: list[np.ndarray], plan: ch.Plan,
                     floor: float) -> None:
        rng = np.random.default_rng(self.random_state)
        errors = self._chunk_errors(inputs, y, preds, plan, self.metric_names, rng)
        self.error_margin_, self.cv_ = margins(errors, dict.fromkeys(errors, floor), self.z, plan.kinds)
