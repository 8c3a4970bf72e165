"""Loss estimators of regression models: the shared fit, window MAE/RMSE with intervals, and margins.

Subclasses (:class:`~otel_ml.estimation.learned.DirectLossEstimator`) implement ``_fit_core`` and
``_predict_core`` (the expected absolute and squared error of every row); margins are cross-validated as for
classification (:mod:`~otel_ml.estimation.margins`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from otel_ml.estimation import _chunks as ch
from otel_ml.estimation import metrics as m
from otel_ml.estimation._inputs import EstimationError, RegressionInputs, prepare_regression
from otel_ml.estimation.estimate import Estimate, interval
from otel_ml.estimation.estimator import EstimatorBase
from otel_ml.estimation.margins import MIN_CV_ROWS, ChunkErrors, chunk_predictions, held_out, margins, out_of_fold
from otel_ml.semconv.attributes import Task


class RegressionEstimator(EstimatorBase):
    """Base of loss estimators for regression models.

    Subclasses implement ``_fit_core(inputs, abs_error)`` and ``_predict_core(inputs) -> (abs, squared)``: the
    expected absolute and squared error of every row.
    """

    tasks: ClassVar[tuple[str, ...]] = (Task.REGRESSION,)
    metric_names: ClassVar[tuple[str, ...]] = m.REGRESSION_METRICS

    def _fit_core(self, inputs: RegressionInputs, error: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_core(self, inputs: RegressionInputs) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def fit(self, reference: pd.DataFrame, *, y_true: str, y_pred: str, features: Sequence[str] = (),
            task: str | None = Task.REGRESSION, **_: Any) -> Self:
        """Fits on a labeled reference: ``y_true``/``y_pred`` numeric columns, optional ``features``.

        Raises:
            EstimationError: Missing or non-numeric columns, empty reference.
        """
        self._resolve(reference, y_true, y_pred, None, features, None, task or Task.REGRESSION)
        inputs = prepare_regression(reference, self.roles_, self.encoder_)
        truth = pd.to_numeric(reference[y_true], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(truth) & np.isfinite(inputs.pred)
        if not ok.any():
            raise EstimationError("reference has no row with finite y_true and y_pred")
        inputs = inputs.take(np.flatnonzero(ok))
        error = inputs.pred - truth[ok]
        self._fit_prepared(inputs, error)
        return self

    def predict_correctness(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row expected absolute error, shape ``(n,)`` (regression's analogue of P(correct))."""
        return self._predict_core(self._prepare(frame))[0]

    def predict_squared_error(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row expected squared error, shape ``(n,)``."""
        return self._predict_core(self._prepare(frame))[1]

    def estimate(self, frame: pd.DataFrame) -> Estimate:
        """Estimated MAE of the window with its interval."""
        return self.estimate_metrics(frame, metrics=(m.MAE,))[m.MAE]

    def estimate_metrics(self, frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> dict[str, Estimate]:
        """Estimated MAE and RMSE of the window."""
        inputs = self._prepare(frame)
        names = tuple(metrics) if metrics is not None else self.metric_names
        values = self._window_values(*self._predict_core(inputs), names)
        drift = self._drift_allowance(frame)
        return {name: interval(name, v, sd, self.error_margin_.get(name, 0.0), len(inputs), self.estimator_key,
                               self.z, self._reference_value(name), drift) for name, (v, sd) in values.items()}

    def _prepare(self, frame: pd.DataFrame) -> RegressionInputs:
        self._check_fitted()
        inputs = prepare_regression(frame, self.roles_, self.encoder_)
        # A missing prediction has no error to estimate: it counts as the reference's typical row.
        inputs.pred = np.where(np.isfinite(inputs.pred), inputs.pred, float(self.reference_.get("median_pred", 0.0)))
        return inputs

    @staticmethod
    def _window_values(abs_e: np.ndarray, sq_e: np.ndarray, metrics: Sequence[str]) -> dict[str, tuple[float, float]]:
        n = abs_e.shape[0]
        out: dict[str, tuple[float, float]] = {}
        if n == 0:
            return {name: (float("nan"), float("nan")) for name in metrics}
        for name in metrics:
            if name == m.MAE:
                var = np.maximum(sq_e - abs_e**2, 0.0)
                out[name] = (float(abs_e.mean()), float(np.sqrt(var.sum()) / n))
            elif name == m.RMSE:
                mse = float(sq_e.mean())
                rmse = math.sqrt(max(mse, 0.0))
                # Var(e^2) = 2 sigma^4 for a centred normal error; delta method for the square root.
                sd_mse = float(np.sqrt(np.sum(2.0 * sq_e**2)) / n)
                out[name] = (rmse, sd_mse / (2 * rmse) if rmse > 0 else 0.0)
        return out

    @staticmethod
    def _realized(error: np.ndarray) -> dict[str, float]:
        return {m.MAE: float(np.mean(np.abs(error))), m.RMSE: float(np.sqrt(np.mean(error**2)))}

    def _cv_predictions(self, inputs: RegressionInputs, error: np.ndarray, folds: list[np.ndarray],
                        plan: ch.Plan) -> list[tuple[np.ndarray, np.ndarray]]:
        """Expected (abs, squared) errors on every simulated chunk from fits that did not see its rows."""
        rng = np.random.default_rng(self.random_state)

        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            est = self._clone()
            est.roles_, est.encoder_ = self.roles_, self.encoder_
            est._fit_core(inputs.take(train), error[train])
            return np.column_stack(est._predict_core(inputs.take(test)))

        n = len(inputs)
        preds = chunk_predictions(plan, out_of_fold(n, folds, fit_predict, rng), held_out(n, plan, fit_predict, rng))
        return [(p[:, 0].copy(), p[:, 1].copy()) for p in preds]

    def _fit_prepared(self, inputs: RegressionInputs, error: np.ndarray) -> None:
        n = len(inputs)
        self.reference_ = {"rows": n, "median_pred": float(np.median(inputs.pred)), **self._realized(error)}
        rng = np.random.default_rng(self.random_state)
        # Floor: standard error of the reference MAE / RMSE themselves.
        abs_e = np.abs(error)
        floor = {m.MAE: float(1.96 * abs_e.std() / math.sqrt(n)),
                 m.RMSE: float(1.96 * (error**2).std() / math.sqrt(n) / (2 * max(self.reference_[m.RMSE], 1e-12)))}
        self.error_margin_ = dict(floor)
        if n >= MIN_CV_ROWS:
            plan = ch.plan_chunks(np.column_stack([inputs.X, inputs.pred]), np.abs(error),
                                  min(self.chunk_size or ch.default_chunk_size(n), n), rng)
            preds = self._cv_predictions(inputs, error, ch.kfold_indices(n, self.cv_folds, rng), plan)
            errs: ChunkErrors = {name: (np.empty(len(plan.chunks)), np.empty(len(plan.chunks)))
                                 for name in self.metric_names}
            for i, (chunk, (p_abs, p_sq)) in enumerate(zip(plan.chunks, preds, strict=True)):
                real = self._realized(error[chunk.rows])
                for name, (v, sd) in self._window_values(p_abs, p_sq, self.metric_names).items():
                    errs[name][0][i], errs[name][1][i] = v - real[name], sd
            self.error_margin_, self.cv_ = margins(errs, floor, self.z, plan.kinds)
        self._fit_core(inputs, error)
