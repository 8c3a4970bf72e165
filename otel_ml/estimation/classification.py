"""Correctness estimators of binary and multiclass models: the shared fit, window estimates and margins.

Subclasses (:mod:`~otel_ml.estimation.confidence`, :mod:`~otel_ml.estimation.learned`,
:mod:`~otel_ml.estimation.auto`) implement ``_fit_core`` and ``_predict_core`` on prepared arrays; this class turns
P(correct) into window metrics (accuracy, F1, ROC-AUC) with intervals and learns its cross-validated margins
(:mod:`~otel_ml.estimation.margins`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from otel_ml.estimation import _chunks as ch
from otel_ml.estimation import metrics as m
from otel_ml.estimation import novelty as nv
from otel_ml.estimation._inputs import (
    ClassificationInputs,
    EstimationError,
    Scores,
    class_codes,
    prepare_classification,
)
from otel_ml.estimation.estimate import Estimate, Novelty, interval
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
from otel_ml.estimation.orientation import Orientation, check_orientation
from otel_ml.semconv.attributes import Task


@dataclass(frozen=True)
class RowEstimates:
    """Per-row estimates of a frame: what the processor turns into counters.

    Attributes:
        p: P(correct) ``(n,)``. Rows out of the reference's support get the model's own confidence (the
            calibration's prior: the reference's evidence does not reach them).
        class_proba: Distribution over the true class ``(n, k)`` aligned with the reference classes.
        pred: Predicted class codes ``(n,)`` (``-1``: a class the reference never had).
        calibration_sd: Posterior standard deviation of each row's calibrated P(correct) beyond the reference rows'
            average (that part is in the cross-validated margin) ``(n,)``: large where the reference had little
            evidence; 0 for unknown rows (their uncertainty is carried by the bounds).
        novelty: Novelty p-value of each row ``(n,)`` (NaN without features or support model).
        unseen: Rows predicting a class the reference never had ``(n,)``.
        out_of_support: Rows farther from the reference than any of its own rows ``(n,)``.
        scores: The scores aligned with the reference classes ``(n, k)`` (binary: ``[1 - p, p]``); None without
            scores.
    """

    p: np.ndarray
    class_proba: np.ndarray
    pred: np.ndarray
    calibration_sd: np.ndarray
    novelty: np.ndarray
    unseen: np.ndarray
    out_of_support: np.ndarray
    scores: np.ndarray | None

    @property
    def unknown(self) -> np.ndarray:
        """Rows of unknown correctness."""
        return self.unseen | self.out_of_support

    def novel_share(self) -> tuple[float, float]:
        """``(share of rows from outside the reference, share of the other rows that are novel)``.

        Unseen-class rows are novel by definition; among the others the share comes from their novelty p-values
        (:func:`otel_ml.estimation.novelty.novel_share`).
        """
        n = self.p.shape[0]
        if n == 0:
            return 0.0, 0.0
        known = ~self.unseen
        rest = nv.novel_share(self.novelty[known]) if known.any() else 0.0
        return float((self.unseen.sum() + rest * known.sum()) / n), rest


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
    @classmethod
    def unavailable_reason(cls, inputs: ClassificationInputs, correct: np.ndarray) -> str:
        """Why :meth:`available` is False on this reference (a sentence for the error message)."""
        return "the reference does not support this method"

    def fit(self, reference: pd.DataFrame, *, y_true: str, y_pred: str, scores: Scores = None,
            features: Sequence[str] = (), classes: Sequence[Any] | None = None, task: str | None = None,
            positive_class: Any = None) -> Self:
        """Fits on a labeled reference (evaluation set).

        Args:
            reference: One row per prediction.
            y_true: Column of the true class.
            y_pred: Column of the predicted class.
            scores: Binary: the column of P(positive class), or one column per class; multiclass: one column per
                class aligned with ``classes``; or a ``{class: column}`` mapping (NannyML's ``y_pred_proba``). None
                when the model gives no scores.
            features: Feature columns (numeric or categorical) for learned estimators and novelty.
            classes: Class order (default: the mapping's classes, else the sorted union of true and predicted
                classes, as strings).
            task: ``binary`` or ``multiclass`` (inferred from the number of classes when None).
            positive_class: Binary: the class a single score column is the probability of (default: the last of
                ``classes``; with a one-entry mapping, its class).

        Returns:
            self

        Raises:
            EstimationError: Missing columns, empty reference, inconsistent scores, scores read the wrong way round
                (:mod:`~otel_ml.estimation.orientation`), an unsupported task, or a method the reference cannot
                support (the message says why and what to use instead).
        """
        roles = self._resolve(reference, y_true, y_pred, scores, features, classes, task, positive_class)
        inputs = prepare_classification(reference, roles, self.encoder_)
        y = class_codes(reference[y_true].to_numpy(), roles.classes)
        self.orientation_ = check_orientation(inputs, y, roles)
        if not self.available(inputs, inputs.pred == y):
            raise EstimationError(f"method {self.key!r}: {self.unavailable_reason(inputs, inputs.pred == y)}")
        self._fit_prepared(inputs, y)
        # The calibration uncertainty of the reference's own rows is already in the cross-validated margin; only
        # what a window's rows add beyond it (thin evidence where they fall) widens its interval.
        self.reference_["calibration_sd"] = float(self._calibration_sd(inputs).mean()) if len(inputs) else 0.0
        return self

    def predict_correctness(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row probability that the prediction is correct, shape ``(n,)``, values in [0, 1]."""
        return self._rows(self._prepare(frame)).p

    def predict_class_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row distribution over the true class ``(n, k)``, aligned with ``roles_.classes``."""
        return self._rows(self._prepare(frame)).class_proba

    def predict_details(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(correct) ``(n,)``, the distribution over the true class ``(n, k)`` and the predicted class codes
        ``(n,)`` (``-1`` for a class the reference never had)."""
        rows = self._rows(self._prepare(frame))
        return rows.p, rows.class_proba, rows.pred

    def predict_rows(self, frame: pd.DataFrame) -> RowEstimates:
        """Everything per row: P(correct), class distribution, calibration uncertainty and novelty (what the
        processor turns into counters)."""
        return self._rows(self._prepare(frame))

    def estimate(self, frame: pd.DataFrame) -> Estimate:
        """Estimated accuracy of the window ``frame`` with its interval."""
        return self.estimate_metrics(frame, metrics=(m.ACCURACY,))[m.ACCURACY]

    def estimate_metrics(self, frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> dict[str, Estimate]:
        """Estimated window metrics, keyed by the names asked for (default: every metric of the task).

        Binary: ``accuracy``, ``f1`` (positive class), ``f1_macro`` (both classes, on request) and, with scores,
        ``roc_auc``. Multiclass: ``accuracy``, ``f1_macro`` (alias ``f1``) and, with scores, ``roc_auc`` (one-vs-rest,
        macro over the classes present). Aliases: ``auc`` = ``roc_auc``, ``macro_f1`` = ``f1_macro``
        (:func:`otel_ml.estimation.metrics.canonical_metric`). ``Estimate.metric`` is the canonical name.

        Raises:
            EstimationError: A metric this estimator cannot estimate (the message lists those it can).
        """
        inputs = self._prepare(frame)
        return self._estimate_prepared(inputs, self._rows(inputs), metrics, self._drift_allowance(frame))

    # --- internals ---------------------------------------------------------------------------------------------
    def _prepare(self, frame: pd.DataFrame) -> ClassificationInputs:
        self._check_fitted()
        return prepare_classification(frame, self.roles_, self.encoder_)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Metrics this estimator estimates by default (and learns margins for)."""
        if self.roles_.task == Task.BINARY:
            return m.BINARY_METRICS if self.roles_.scores else (m.ACCURACY, m.F1)
        return m.MULTICLASS_METRICS if self.roles_.scores else (m.ACCURACY, m.F1_MACRO)

    @property
    def supported_metrics(self) -> tuple[str, ...]:
        """Every metric :meth:`estimate_metrics` accepts (canonical names)."""
        extra = (m.F1_MACRO,) if self.roles_.task == Task.BINARY else ()
        return (*self.metric_names, *extra)

    def _calibration_sd(self, inputs: ClassificationInputs) -> np.ndarray:
        """Posterior standard deviation of each row's P(correct) (subclasses that calibrate override this)."""
        return np.zeros(len(inputs))

    def _rows(self, inputs: ClassificationInputs) -> RowEstimates:
        p = self._predict_core(inputs)
        n = len(inputs)
        novelty = self._pvalues(inputs.X)
        unseen = inputs.pred < 0
        support = getattr(self, "support_", None)
        floor = support.floor if support is not None else 0.0
        out = (novelty <= floor) & ~unseen if n else np.zeros(0, dtype=bool)
        if out.any() and inputs.proba is not None:
            # Where the reference's evidence does not reach, only the calibration's prior is left: the model's
            # own confidence (see confidence.PRIOR_ROWS).
            conf = inputs.confidence()
            p = np.where(out & np.isfinite(conf), np.clip(conf, 0.0, 1.0), p)
        baseline = float(self.reference_.get("calibration_sd", 0.0))
        cal = np.where(unseen | out, 0.0, np.maximum(self._calibration_sd(inputs) - baseline, 0.0)) if n \
            else np.zeros(0)
        k = len(self.roles_.classes)
        cp = m.class_probabilities(p, inputs.pred, inputs.proba, k)
        return RowEstimates(p, cp, inputs.pred, cal, novelty, unseen, out, inputs.proba)

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
            positive = None if name == m.F1_MACRO else pos  # macro F1: every class, also for binary
            if name in (m.F1, m.F1_MACRO):
                value = m.f1_from_outcomes(*m.expected_outcomes(cp, inputs.pred), positive=positive)
            elif name == m.ROC_AUC and score is not None and pos is not None:
                value = m.expected_roc_auc(score, cp[:, pos])
            elif name == m.ROC_AUC and inputs.proba is not None and pos is None:
                value = m.expected_roc_auc_ovr(inputs.proba, cp)
            else:
                continue
            scores = score if pos is not None else inputs.proba
            sd = float("nan") if rng is None else m.simulated_sd(cp, inputs.pred, scores, name, positive=positive,
                                                                  rng=rng)
            out[name] = (value, sd)
        return out

    def _estimate_prepared(self, inputs: ClassificationInputs, rows: RowEstimates,
                           metrics: Sequence[str] | None, drift: float = 0.0) -> dict[str, Estimate]:
        asked = tuple(metrics) if metrics is not None else self.metric_names
        names = {name: m.canonical_metric(name, self.roles_.task) for name in asked}
        unknown = [x for x, c in names.items() if c not in self.supported_metrics]
        if unknown:
            raise EstimationError(f"cannot estimate {unknown}; this estimator supports {list(self.supported_metrics)}"
                                  f" (aliases: {sorted(m.METRIC_ALIASES)}; f1 is macro-F1 for multiclass)")
        rng = np.random.default_rng(self.random_state)
        values = self._window_values(inputs, rows.p, tuple(dict.fromkeys(names.values())), rng)
        n = len(inputs)
        calibration = float(rows.calibration_sd.mean()) if n else 0.0
        share, rest_share = rows.novel_share()
        out: dict[str, Estimate] = {}
        for name, canonical in names.items():
            if canonical not in values:
                continue
            value, sd = values[canonical]
            out[name] = interval(canonical, value, sd, self.error_margin_.get(canonical, 0.0), n, self.estimator_key,
                                 self.z, self._reference_value(canonical), drift, calibration,
                                 self._novelty(canonical, value, rows, share, rest_share))
        return out

    @staticmethod
    def _novelty(metric: str, value: float, rows: RowEstimates, share: float, rest_share: float) -> Novelty:
        """The bounds unknown-correctness rows imply for ``metric``.

        Accuracy: pessimistic = unseen-class rows wrong and a ``rest_share`` of the other rows' estimated correct
        mass removed; optimistic = those rows right. Other metrics (F1, ROC AUC): ``value -/+ share`` (a share s
        of rows of unknown correctness moves a rate by about s).
        """
        n = rows.p.shape[0]
        unknown = int(rows.unknown.sum())
        if n == 0:
            return Novelty()
        if metric != m.ACCURACY:
            return Novelty(unknown, share, value - share, value + share) if share > 0 else Novelty(unknown, share)
        known = ~rows.unseen
        mass = float(rows.p[known].sum())
        pessimistic = mass * (1.0 - rest_share) / n
        optimistic = (mass + rest_share * float((1.0 - rows.p[known]).sum()) + float(rows.unseen.sum())) / n
        return Novelty(unknown, share, pessimistic, optimistic)

    def _realized(self, inputs: ClassificationInputs, y: np.ndarray, metrics: Sequence[str]) -> dict[str, float]:
        k, pos = len(self.roles_.classes), self._positive
        out: dict[str, float] = {}
        for name in metrics:
            if name == m.ACCURACY:
                out[name] = float(np.mean(inputs.pred == y))
            elif name in (m.F1, m.F1_MACRO):
                out[name] = m.f1_from_outcomes(*m.realized_outcomes(y, inputs.pred, k),
                                               positive=pos if name == m.F1 else None)
            elif name == m.ROC_AUC and inputs.proba is not None and pos is not None:
                out[name] = m.realized_roc_auc(y == pos, inputs.proba[:, pos])
            elif name == m.ROC_AUC and inputs.proba is not None:
                out[name] = m.realized_roc_auc_ovr(y, inputs.proba)
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

    orientation_: Orientation

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
