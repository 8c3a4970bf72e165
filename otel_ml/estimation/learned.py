"""Learned estimators: a correctness model on features and scores, and direct loss estimation for regression.

* :class:`LearnedCorrectnessEstimator` (``learned``): a gradient-boosted classifier of "the prediction was right"
  on the features, the calibrated confidence (monotonic) and the predicted class (the idea behind Deepchecks' model
  evaluator). It sees *where* in feature space the model errs, so it follows covariate shift into regions where the
  model is weaker than its confidence says.
* :class:`DirectLossEstimator` (``dle``, regression): gradient-boosted regressors of the absolute and the squared
  error on the features and the prediction (the idea behind NannyML's DLE). Below :data:`MIN_DLE_ROWS` reference
  rows it falls back to the reference's mean errors.

Both use scikit-learn's ``HistGradientBoosting*`` (native missing values and categorical codes) and are saved with
skops.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from otel_ml.estimation._inputs import ClassificationInputs, RegressionInputs
from otel_ml.estimation.classification import ClassificationEstimator
from otel_ml.estimation.confidence import CalibratedConfidenceEstimator
from otel_ml.estimation.regression import RegressionEstimator

MIN_ERRORS = 20
"""Wrong (and right) reference predictions the learned correctness model needs; fewer -> not available."""
MIN_DLE_ROWS = 100

_GB_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 15, "min_samples_leaf": 40,
    "l2_regularization": 1.0, "n_iter_no_change": 20, "validation_fraction": 0.15,
}


def _single_thread() -> threadpool_limits:
    """OpenMP limited to one thread: these fits are small and many (cross-validation), and on a busy machine the
    thread synchronisation of scikit-learn's gradient boosting costs more than it saves (measured: 5x slower on
    2 shared cores)."""
    return threadpool_limits(limits=1, user_api="openmp")


def _gb_params(n: int, random_state: int) -> dict[str, Any]:
    params = dict(_GB_PARAMS, random_state=random_state, early_stopping=n >= 1000)
    if n < 1000:
        params.update(max_iter=100, min_samples_leaf=max(5, n // 50))
    return params


class LearnedCorrectnessEstimator(ClassificationEstimator):
    """Gradient-boosted model of P(correct) on features, scores and the predicted class (``learned``)."""

    key: ClassVar[str] = "learned"

    @classmethod
    def available(cls, inputs: ClassificationInputs, correct: np.ndarray) -> bool:
        """Needs at least :data:`MIN_ERRORS` wrong and right reference predictions."""
        errors = int((~correct).sum())
        return errors >= MIN_ERRORS and correct.shape[0] - errors >= MIN_ERRORS

    @classmethod
    def unavailable_reason(cls, inputs: ClassificationInputs, correct: np.ndarray) -> str:
        """How many errors the reference has and what to do instead."""
        errors, n = int((~correct).sum()), int(correct.shape[0])
        return (f"needs at least {MIN_ERRORS} wrong and {MIN_ERRORS} right predictions in the reference to learn "
                f"where the model errs; this one has {errors} wrong of {n}. Use method 'auto' (it compares "
                "calibrated confidence, plain confidence and ATC on held-out reference data and takes 'learned' "
                "only when it has the evidence), 'cbpe', or a larger evaluation set")

    def _calibration_sd(self, inputs: ClassificationInputs) -> np.ndarray:
        """The calibrated confidence's posterior sd: the model learns where that calibration is wrong, but its
        evidence is as thin in the same places."""
        return self.calibrator_._calibration_sd(inputs)

    def _design(self, inputs: ClassificationInputs) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Design matrix, its categorical mask and monotonic constraints.

        Columns: the features, the calibrated confidence of :class:`CalibratedConfidenceEstimator` (fitted on the
        same rows; P(correct) may only increase with it), and the predicted class. The model thus learns where in
        feature space the calibrated confidence is wrong, and cannot contradict the confidence's ordering.
        """
        names = self.encoder_.names
        pred = np.where((inputs.pred >= 0) & (inputs.pred < 250), inputs.pred, np.nan).astype(float)
        design = np.column_stack([inputs.X, self.calibrator_._predict_core(inputs), pred])
        cat = np.asarray([self.encoder_.is_categorical(n) for n in names] + [False, True])
        return design, cat, [0] * len(names) + [1, 0]

    def _fit_core(self, inputs: ClassificationInputs, correct: np.ndarray) -> None:
        self.calibrator_ = CalibratedConfidenceEstimator(**self.get_params())
        self.calibrator_.roles_, self.calibrator_.encoder_ = self.roles_, self.encoder_
        self.calibrator_._fit_core(inputs, correct)
        self.prior_ = float(correct.mean())
        self.model_: HistGradientBoostingClassifier | None = None
        if correct.all() or not correct.any():
            return
        design, cat, monotonic = self._design(inputs)
        model = HistGradientBoostingClassifier(categorical_features=cat, monotonic_cst=monotonic,
                                               **_gb_params(len(inputs), self.random_state))
        with _single_thread():
            self.model_ = model.fit(design, correct.astype(int))

    def _predict_core(self, inputs: ClassificationInputs) -> np.ndarray:
        if self.model_ is None or len(inputs) == 0:
            return self.calibrator_._predict_core(inputs) if len(inputs) else np.empty(0)
        design, _, _ = self._design(inputs)
        with _single_thread():
            return np.asarray(self.model_.predict_proba(design)[:, 1], dtype=float)

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        calibrator, _ = self.calibrator_._core_state()
        return ({"prior": self.prior_, "calibrator": calibrator},
                {} if self.model_ is None else {"correctness": self.model_})

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.prior_ = float(core["prior"])
        self.calibrator_ = CalibratedConfidenceEstimator(**self.get_params())
        self.calibrator_.roles_, self.calibrator_.encoder_ = self.roles_, self.encoder_
        self.calibrator_._load_core_state(core["calibrator"], {})
        self.model_ = objects.get("correctness")


class DirectLossEstimator(RegressionEstimator):
    """Direct loss estimation (``dle``): models of |error| and error² on features and the prediction.

    Example:
        >>> import numpy as np, pandas as pd
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=2000)
        >>> ref = pd.DataFrame({"x": x, "y": x + rng.normal(size=2000) * (1 + (x > 0)), "yhat": x})
        >>> est = DirectLossEstimator().fit(ref, y_true="y", y_pred="yhat", features=["x"])
        >>> bool(est.predict_correctness(pd.DataFrame({"x": [2.0], "yhat": [2.0]}))[0] > 1.2)
        True
    """

    key: ClassVar[str] = "dle"

    def _design(self, inputs: RegressionInputs) -> tuple[np.ndarray, np.ndarray]:
        cat = [self.encoder_.is_categorical(name) for name in self.encoder_.names] + [False]
        return np.column_stack([inputs.X, inputs.pred]), np.asarray(cat)

    def _fit_core(self, inputs: RegressionInputs, error: np.ndarray) -> None:
        self.mean_abs_ = float(np.mean(np.abs(error)))
        self.mean_sq_ = float(np.mean(error**2))
        self.models_: dict[str, HistGradientBoostingRegressor] = {}
        if len(inputs) < MIN_DLE_ROWS:
            return
        design, cat = self._design(inputs)
        # No early stopping: |error| is a noisy target whose validation loss flattens early, and the stopped models
        # underestimated the error under shift on NannyML's car price set (MAE of the estimate 12.7 vs 10.4).
        params = dict(_gb_params(len(inputs), self.random_state), early_stopping=False)
        with _single_thread():
            for name, target in (("abs", np.abs(error)), ("sq", error**2)):
                model = HistGradientBoostingRegressor(categorical_features=cat, **params)
                self.models_[name] = model.fit(design, target)

    def _predict_core(self, inputs: RegressionInputs) -> tuple[np.ndarray, np.ndarray]:
        n = len(inputs)
        if not self.models_ or n == 0:
            return np.full(n, self.mean_abs_), np.full(n, self.mean_sq_)
        design, _ = self._design(inputs)
        with _single_thread():
            abs_e = np.maximum(self.models_["abs"].predict(design), 0.0)
            sq_e = np.maximum(self.models_["sq"].predict(design), abs_e**2)  # E[e^2] >= E[|e|]^2
        return abs_e, sq_e

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"mean_abs": self.mean_abs_, "mean_sq": self.mean_sq_}, dict(self.models_)

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.mean_abs_ = float(core["mean_abs"])
        self.mean_sq_ = float(core["mean_sq"])
        self.models_ = {k: objects[k] for k in ("abs", "sq") if k in objects}
