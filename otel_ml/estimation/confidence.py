"""Confidence-based estimators: calibrated confidence (CBPE idea) and average thresholded confidence (ATC).

* :class:`CalibratedConfidenceEstimator` (``cbpe``): isotonic calibration of the model's score on the reference:
  P(correct | score of the predicted class), per predicted class when that class has enough correct and wrong
  examples, else pooled (binary with the usual threshold: the same as calibrating P(positive | score), and also right
  for other thresholds). Without scores: the smoothed precision of each
  predicted class. Sound under covariate shift as long as the model's scores stay calibrated
  (NannyML, "Confidence-based Performance Estimation").
* :class:`ATCEstimator` (``atc``): Garg et al., "Leveraging Unlabeled Data to Predict Out-of-Distribution
  Performance", ICLR 2022. A threshold on the negative entropy of the scores is chosen so that the share of
  reference rows above it equals the reference accuracy; a window's estimated accuracy is its share above the
  threshold. Per-row correctness is therefore 0 or 1: its sampling variance is carried by the error margin.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from sklearn.isotonic import IsotonicRegression

from otel_ml.estimation._inputs import ClassificationInputs
from otel_ml.estimation.classification import ClassificationEstimator

MIN_PER_CLASS = 50
"""Rows (with at least 5 correct and 5 wrong) a predicted class needs for its own calibration curve."""
PRIOR_WEIGHT = 10.0
"""Pseudo-count pulling a predicted class's precision towards the overall accuracy (no-score fallback)."""


def fit_isotonic(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Isotonic fit of ``y`` on ``x`` as interpolation knots (JSON-safe); NaN ``x`` are ignored."""
    ok = np.isfinite(x)
    if ok.sum() < 2 or np.unique(x[ok]).shape[0] < 2:
        mean = float(np.mean(y)) if y.shape[0] else 0.5
        return {"x": [0.0, 1.0], "y": [mean, mean]}
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x[ok], y[ok].astype(float))
    return {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}


def apply_isotonic(knots: Mapping[str, list[float]], x: np.ndarray) -> np.ndarray:
    """Evaluates an isotonic fit; NaN inputs get the curve's mean."""
    xs, ys = np.asarray(knots["x"]), np.asarray(knots["y"])
    out = np.interp(np.nan_to_num(x, nan=float(np.median(xs))), xs, ys)
    return np.clip(out, 0.0, 1.0)


class CalibratedConfidenceEstimator(ClassificationEstimator):
    """Calibrated confidence (``cbpe``): P(correct) from the model's own scores, calibrated on the reference.

    Example:
        >>> import pandas as pd
        >>> ref = pd.DataFrame({"y": [0, 1] * 60, "p": [0.2, 0.8] * 60, "yhat": [0, 1] * 60})
        >>> est = CalibratedConfidenceEstimator().fit(ref, y_true="y", y_pred="yhat", scores="p")
        >>> round(est.estimate(ref).value, 3)
        1.0
    """

    key: ClassVar[str] = "cbpe"

    def _fit_core(self, inputs: ClassificationInputs, correct: np.ndarray) -> None:
        k = len(self.roles_.classes)
        self.prior_ = float(correct.mean()) if correct.shape[0] else 0.5
        self.curves_: dict[str, dict[str, list[float]]] = {}
        self.precision_: list[float] = []
        if inputs.proba is None:
            known = inputs.pred >= 0
            class_hits = np.bincount(inputs.pred[known], weights=correct[known], minlength=k)
            counts = np.bincount(inputs.pred[known], minlength=k)
            self.precision_ = ((class_hits + PRIOR_WEIGHT * self.prior_) / (counts + PRIOR_WEIGHT)).tolist()
            return
        conf = inputs.confidence()
        self.curves_["all"] = fit_isotonic(conf, correct)
        for c in range(k):
            sel = inputs.pred == c
            hits = int(correct[sel].sum())
            if sel.sum() >= MIN_PER_CLASS and hits >= 5 and sel.sum() - hits >= 5:
                self.curves_[str(c)] = fit_isotonic(conf[sel], correct[sel])

    def _predict_core(self, inputs: ClassificationInputs) -> np.ndarray:
        n = len(inputs)
        if inputs.proba is None:
            precision = np.asarray(self.precision_ or [self.prior_])
            return np.where(inputs.pred >= 0, precision[np.clip(inputs.pred, 0, len(precision) - 1)], self.prior_)
        conf = inputs.confidence()
        p = apply_isotonic(self.curves_["all"], conf) if n else np.empty(0)
        for key, curve in self.curves_.items():
            if key != "all":
                sel = inputs.pred == int(key)
                if sel.any():
                    p[sel] = apply_isotonic(curve, conf[sel])
        return p

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"prior": self.prior_, "curves": self.curves_, "precision": self.precision_}, {}

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.prior_ = float(core["prior"])
        self.curves_ = {k: dict(v) for k, v in core["curves"].items()}
        self.precision_ = list(core["precision"])


def negative_entropy(proba: np.ndarray) -> np.ndarray:
    """Negative entropy of each row's (normalised) scores; higher means more confident."""
    total = proba.sum(axis=1, keepdims=True)
    p = proba / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


class ATCEstimator(ClassificationEstimator):
    """Average thresholded confidence (``atc``, Garg et al. 2022) on the negative entropy of the scores."""

    key: ClassVar[str] = "atc"

    @classmethod
    def available(cls, inputs: ClassificationInputs, correct: np.ndarray) -> bool:
        """Needs scores."""
        return inputs.proba is not None

    def _fit_core(self, inputs: ClassificationInputs, correct: np.ndarray) -> None:
        assert inputs.proba is not None  # guaranteed by available()
        score = negative_entropy(inputs.proba)
        acc = float(correct.mean()) if correct.shape[0] else 0.5
        # Share of reference rows strictly above the threshold equals the reference accuracy.
        self.threshold_ = float(np.quantile(score, 1.0 - acc)) if acc < 1.0 else float(score.min()) - 1.0

    def _predict_core(self, inputs: ClassificationInputs) -> np.ndarray:
        if inputs.proba is None:
            return np.full(len(inputs), np.nan)
        return (negative_entropy(inputs.proba) > self.threshold_).astype(float)

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"threshold": self.threshold_}, {}

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.threshold_ = float(core["threshold"])
