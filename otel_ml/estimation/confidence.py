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
MIN_ATC_ERRORS = 5
"""Wrong reference predictions ATC needs: its threshold is the reference's error-rate quantile of the confidence;
with no errors it would call every prediction right, and win a contest on a perfect reference's chunks."""
PRIOR_WEIGHT = 10.0
"""Pseudo-count pulling a predicted class's precision towards the overall accuracy (no-score fallback)."""


PRIOR_ROWS = 5.0
"""Weight, in reference rows, of the prior behind every calibration curve: the model's own confidence.

The curve is an isotonic regression of "the prediction was right" on the confidence, fitted to the reference rows
*plus* pseudo-observations that say "a prediction of confidence c is right with probability c", spread evenly over
the confidence range with this total weight (:data:`PRIOR_POINTS` points). Where the reference has many rows, they
outweigh the prior; where it has few (the low confidences of a near-perfect model), the curve follows the model's
own confidence instead of extending the nearest evidence (on a reference with 6 errors in 361 rows, plain isotonic
calibration maps every confidence above 0.627 to 1.0). One more pseudo-row at the highest confidence says "right as
often as the reference overall", so no curve reaches 1.0 (and one at the lowest, "right as often as chance", so none
reaches 0)."""
PRIOR_POINTS = 40
"""Pseudo-observations the prior is spread over."""
BANDWIDTH = 0.05
"""Half-width, in confidence, of the neighbourhood whose rows count as the evidence behind a calibrated value."""


def fit_isotonic(x: np.ndarray, y: np.ndarray, *, low: float = 0.0, base_rate: float | None = None,
                 prior_rows: float = PRIOR_ROWS) -> dict[str, list[float]]:
    """Isotonic fit of ``y`` (0/1) on ``x`` with the confidence prior (see :data:`PRIOR_ROWS`) as interpolation
    knots (JSON-safe): ``x``, ``y`` (calibrated P(correct)) and ``sd`` (its posterior standard deviation,
    ``sqrt(p (1 - p) / (w + 1))`` with ``w`` the weight of real and pseudo rows within :data:`BANDWIDTH` of the
    knot: large where the reference knew little). NaN ``x`` are ignored; ``low`` is the lowest possible confidence
    (``1/k``).
    """
    ok = np.isfinite(x)
    xs, ys = x[ok].astype(float), y[ok].astype(float)
    base = base_rate if base_rate is not None else float(np.mean(ys)) if ys.size else 0.5
    low = float(min(low, xs.min())) if xs.size else low
    top = float(max(1.0, xs.max())) if xs.size else 1.0
    grid = low + (np.arange(PRIOR_POINTS) + 0.5) * (top - low) / PRIOR_POINTS
    px = np.concatenate([xs, grid, [low, top]])
    py = np.concatenate([ys, grid, [low, base]])
    pw = np.concatenate([np.ones(xs.size), np.full(PRIOR_POINTS, prior_rows / PRIOR_POINTS), [1.0, 1.0]])
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(px, py, sample_weight=pw)
    fitted = iso.predict(px)
    order = np.argsort(px, kind="stable")
    fx, fv = px[order], fitted[order]
    keep = np.ones(fx.size, dtype=bool)  # knots: both ends of every block of equal fitted value
    keep[1:-1] = (fv[1:-1] != fv[:-2]) | (fv[1:-1] != fv[2:])
    knots_x, knots_y = fx[keep], fv[keep]
    # Evidence behind each knot: real and pseudo rows within BANDWIDTH of it (the local effective sample size).
    sorted_w = np.cumsum(pw[order])
    lo_idx = np.searchsorted(fx, knots_x - BANDWIDTH, side="left")
    hi_idx = np.searchsorted(fx, knots_x + BANDWIDTH, side="right")
    weight = sorted_w[hi_idx - 1] - np.where(lo_idx > 0, sorted_w[np.maximum(lo_idx - 1, 0)], 0.0)
    knots_sd = np.sqrt(np.maximum(knots_y * (1 - knots_y), 0.0) / (weight + 1.0))
    return {"x": knots_x.tolist(), "y": knots_y.tolist(), "sd": knots_sd.tolist()}


def apply_isotonic(knots: Mapping[str, list[float]], x: np.ndarray) -> np.ndarray:
    """Evaluates an isotonic fit; NaN inputs get the curve's value at the median knot."""
    xs, ys = np.asarray(knots["x"]), np.asarray(knots["y"])
    out = np.interp(np.nan_to_num(x, nan=float(np.median(xs))), xs, ys)
    return np.clip(out, 0.0, 1.0)


def isotonic_sd(knots: Mapping[str, list[float]], x: np.ndarray) -> np.ndarray:
    """Posterior standard deviation of the calibrated value at ``x`` (0 for curves saved without it)."""
    if "sd" not in knots:
        return np.zeros(x.shape[0])
    xs = np.asarray(knots["x"])
    return np.interp(np.nan_to_num(x, nan=float(np.median(xs))), xs, np.asarray(knots["sd"]))


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
        self.counts_: list[int] = []
        if inputs.proba is None:
            known = inputs.pred >= 0
            class_hits = np.bincount(inputs.pred[known], weights=correct[known], minlength=k)
            counts = np.bincount(inputs.pred[known], minlength=k)
            self.precision_ = ((class_hits + PRIOR_WEIGHT * self.prior_) / (counts + PRIOR_WEIGHT)).tolist()
            self.counts_ = counts.astype(int).tolist()
            return
        conf = inputs.confidence()
        low = 1.0 / max(k, 2)
        self.curves_["all"] = fit_isotonic(conf, correct, low=low)
        for c in range(k):
            sel = inputs.pred == c
            hits = int(correct[sel].sum())
            if sel.sum() >= MIN_PER_CLASS and hits >= 5 and sel.sum() - hits >= 5:
                self.curves_[str(c)] = fit_isotonic(conf[sel], correct[sel], low=low)

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

    def _calibration_sd(self, inputs: ClassificationInputs) -> np.ndarray:
        """Posterior standard deviation of each row's calibrated P(correct): how little the reference knew."""
        n = len(inputs)
        if inputs.proba is None:
            counts = np.asarray(self.counts_ or [0] * max(len(self.precision_), 1), dtype=float)
            precision = np.asarray(self.precision_ or [self.prior_])
            idx = np.clip(inputs.pred, 0, len(precision) - 1)
            p = np.where(inputs.pred >= 0, precision[idx], self.prior_)
            w = np.where(inputs.pred >= 0, counts[np.clip(inputs.pred, 0, len(counts) - 1)], 0.0) + PRIOR_WEIGHT
            return np.sqrt(p * (1 - p) / (w + 1.0))
        conf = inputs.confidence()
        sd = isotonic_sd(self.curves_["all"], conf) if n else np.empty(0)
        for key, curve in self.curves_.items():
            if key != "all":
                sel = inputs.pred == int(key)
                if sel.any():
                    sd[sel] = isotonic_sd(curve, conf[sel])
        return sd

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"prior": self.prior_, "curves": self.curves_, "precision": self.precision_,
                "counts": self.counts_}, {}

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.prior_ = float(core["prior"])
        self.curves_ = {k: dict(v) for k, v in core["curves"].items()}
        self.precision_ = list(core["precision"])
        self.counts_ = [int(c) for c in core.get("counts", [])]


class ConfidenceEstimator(ClassificationEstimator):
    """Average confidence (``confidence``): P(correct) is the model's own score of the predicted class, uncalibrated.

    The right estimator when the model's scores are calibrated *in production* while the reference says little
    about them (few errors), and a candidate of ``auto`` for that reason; it needs scores.
    """

    key: ClassVar[str] = "confidence"

    @classmethod
    def available(cls, inputs: ClassificationInputs, correct: np.ndarray) -> bool:
        """Needs scores."""
        return inputs.proba is not None

    @classmethod
    def unavailable_reason(cls, inputs: ClassificationInputs, correct: np.ndarray) -> str:
        """No scores."""
        return "needs score columns (the model's probabilities); without them use 'cbpe' or 'auto'"

    def _fit_core(self, inputs: ClassificationInputs, correct: np.ndarray) -> None:
        self.prior_ = float(correct.mean()) if correct.shape[0] else 0.5

    def _predict_core(self, inputs: ClassificationInputs) -> np.ndarray:
        if inputs.proba is None:
            return np.full(len(inputs), self.prior_)
        conf = inputs.confidence()
        return np.clip(np.where(np.isfinite(conf), conf, self.prior_), 0.0, 1.0)

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"prior": self.prior_}, {}

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.prior_ = float(core["prior"])


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
        """Needs scores and at least :data:`MIN_ATC_ERRORS` wrong reference predictions."""
        return inputs.proba is not None and int((~correct).sum()) >= MIN_ATC_ERRORS

    @classmethod
    def unavailable_reason(cls, inputs: ClassificationInputs, correct: np.ndarray) -> str:
        """No scores, or too few errors to place the threshold."""
        if inputs.proba is None:
            return "needs score columns (the model's probabilities); without them use 'cbpe' or 'auto'"
        return (f"sets its threshold at the reference's error rate and needs at least {MIN_ATC_ERRORS} wrong "
                f"predictions for that; this reference has {int((~correct).sum())}. Use 'auto' or 'cbpe'")

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
