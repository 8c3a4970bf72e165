"""Automatic choice of the correctness estimator per model, cross-validated on the reference.

Candidates: ``cbpe`` (calibrated confidence), ``atc`` and ``confidence`` (plain average confidence; both need
scores), ``learned`` (with at least :data:`~otel_ml.estimation.learned.MIN_ERRORS` wrong and right predictions) and
``blend`` (the mean of ``cbpe`` and ``learned``, for information). Each produces out-of-fold correctness on the
reference and is scored on the same simulated random and covariate-shifted chunks
(:mod:`otel_ml.estimation._chunks`; ``cv_scores_``, shown by ``otel-ml reference report``). The contest runs
whenever the reference has :data:`~otel_ml.estimation.margins.MIN_CV_ROWS` rows, also when it has too few errors for
``learned``: a near-perfect reference is exactly where calibrated confidence can be overconfident.

The choice, in two steps:

1. ``learned`` or ``cbpe``, by held-out likelihood: ``learned`` when its out-of-fold log-loss of "the prediction is
   right" beats the calibrated confidence's by more than :data:`LOGLIK_Z` standard errors (paired over reference
   rows), i.e. when the features demonstrably carry information about correctness beyond the model's own calibrated
   confidence. A correction learned from noise is not harmless: under shift it turns into bias (on NannyML's
   work-from-home set, whose scores are the true probabilities, it tripled the error). Chunk MAE did not
   discriminate there (differences within its noise), the likelihood test does (benchmarks/README.md).
2. When that is ``cbpe``, ``confidence`` or ``atc`` replace it only where they win: when their absolute error on
   the simulated chunks is lower by more than :data:`CHUNK_Z` standard errors (paired over chunks, random and
   shifted chunks weighted equally) *and* lower on both kinds of chunks. ATC's per-row correctness is 0 or 1, so it
   has no likelihood; chunk errors are the common ground. A ``learned`` choice is not challenged on chunk errors:
   its advantage shows in likelihood, not in simulated-chunk MAE (on NannyML's multiclass set plain confidence has
   the lower chunk error but twice the error on the real analysis chunks).

The chosen candidate's chunk errors give the error margins. Below ``MIN_CV_ROWS`` rows, ``cbpe`` (calibrated
scores, or the smoothed per-class precision without scores) is used without a contest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from otel_ml.estimation import _chunks as ch
from otel_ml.estimation import metrics as m
from otel_ml.estimation._inputs import ClassificationInputs
from otel_ml.estimation.classification import ClassificationEstimator
from otel_ml.estimation.confidence import ATCEstimator, CalibratedConfidenceEstimator, ConfidenceEstimator
from otel_ml.estimation.learned import LearnedCorrectnessEstimator
from otel_ml.estimation.margins import MIN_CV_ROWS

BLEND = "blend"
_MEMBERS: dict[str, type[ClassificationEstimator]] = {
    CalibratedConfidenceEstimator.key: CalibratedConfidenceEstimator,
    ATCEstimator.key: ATCEstimator,
    ConfidenceEstimator.key: ConfidenceEstimator,
    LearnedCorrectnessEstimator.key: LearnedCorrectnessEstimator,
}
_BLEND_OF = (CalibratedConfidenceEstimator.key, LearnedCorrectnessEstimator.key)


LOGLIK_Z = 2.0
"""``learned`` is chosen when its held-out log-loss beats ``cbpe``'s by more than this many standard errors."""
CHUNK_Z = 2.0
"""``confidence`` or ``atc`` replace the likelihood choice when their simulated-chunk error is lower by more than
this many standard errors (and lower on random and on shifted chunks)."""
_CHALLENGERS = (ConfidenceEstimator.key, ATCEstimator.key)


def chunk_gain_z(errors_new: np.ndarray, errors_base: np.ndarray, kinds: list[str]) -> tuple[float, bool]:
    """z-statistic of the paired difference of absolute chunk errors (new - base; random and shifted chunks weighted
    equally; negative = new better) and whether new is better on every kind of chunk."""
    kind = np.asarray(kinds)
    means, variances, better = [], [], True
    for k in (ch.RANDOM, ch.SHIFTED):
        sel = (kind == k) & np.isfinite(errors_new) & np.isfinite(errors_base)
        if not sel.any():
            continue
        diff = np.abs(errors_new[sel]) - np.abs(errors_base[sel])
        means.append(float(diff.mean()))
        variances.append(float(diff.var(ddof=1)) / diff.size if diff.size > 1 else 0.0)
        better = better and means[-1] < 0
    if not means:
        return 0.0, False
    mean = float(np.mean(means))
    se = float(np.sqrt(np.sum(variances))) / len(means)
    return (mean / se if se > 0 else (-np.inf if mean < 0 else 0.0)), better


def loss_gain_z(correct: np.ndarray, p_new: np.ndarray, p_base: np.ndarray) -> float:
    """z-statistic of the paired per-row log-loss difference (new - base) on held-out rows; negative = new better."""
    eps = 1e-6

    def loss(p: np.ndarray) -> np.ndarray:
        return -np.where(correct, np.log(np.clip(p, eps, 1.0)), np.log(np.clip(1.0 - p, eps, 1.0)))

    diff = loss(p_new) - loss(p_base)
    sd = float(diff.std(ddof=1)) if diff.size > 1 else 0.0
    if sd == 0.0:
        return 0.0
    return float(diff.mean() / (sd / np.sqrt(diff.size)))


class AutoCorrectnessEstimator(ClassificationEstimator):
    """Chooses among ``cbpe``, ``learned``, ``confidence`` and ``atc`` on held-out data (``auto``; see the module
    docstring).

    After ``fit``: ``choice_`` is the chosen key (reported as ``ml.estimator``), ``loglik_z_`` the z-statistic of
    the learned model's held-out log-loss gain over ``cbpe`` (NaN when it was not a candidate), ``chunk_z_`` the
    z-statistic of each challenger's chunk-error gain over the likelihood choice, ``cv_scores_`` the
    simulated-chunk accuracy MAE of every candidate (``cbpe``, ``atc``, ``confidence``, ``learned``, ``blend``),
    and ``members_`` the fitted estimator behind the choice.
    """

    key: ClassVar[str] = "auto"

    @property
    def estimator_key(self) -> str:
        """The chosen method."""
        return getattr(self, "choice_", self.key)

    def _member(self, key: str) -> ClassificationEstimator:
        est = _MEMBERS[key](**self.get_params())
        est.roles_, est.encoder_ = self.roles_, self.encoder_
        return est

    def _fit_prepared(self, inputs: ClassificationInputs, y: np.ndarray) -> None:
        correct, floor = self._start(inputs, y)
        n = len(inputs)
        self.cv_scores_: dict[str, float] = {}
        self.loglik_z_ = float("nan")
        self.chunk_z_: dict[str, float] = {}
        keys = [k for k, cls in _MEMBERS.items() if cls.available(inputs, correct)]
        if n < MIN_CV_ROWS:
            keys = [CalibratedConfidenceEstimator.key]
        if n >= MIN_CV_ROWS:
            rng = np.random.default_rng(self.random_state)
            folds = ch.kfold_indices(n, self.cv_folds, rng)
            plan = self._plan(inputs, correct, rng)
            results = {k: self._member(k)._cv_predictions(inputs, correct, folds, plan) for k in keys}
            preds = {k: r[0] for k, r in results.items()}
            if all(k in preds for k in _BLEND_OF):
                preds[BLEND] = [np.mean(ps, axis=0) for ps in zip(*(preds[k] for k in _BLEND_OF), strict=True)]
            errors: dict[str, np.ndarray] = {}
            for k, p in preds.items():
                errors[k], _ = self._chunk_errors(inputs, y, p, plan, (m.ACCURACY,), None)[m.ACCURACY]
                self.cv_scores_[k] = ch.weighted_mae(errors[k], plan.kinds)
            self.loglik_z_ = float("nan")
            if LearnedCorrectnessEstimator.key in results:
                self.loglik_z_ = loss_gain_z(correct, results[LearnedCorrectnessEstimator.key][1],
                                             results[CalibratedConfidenceEstimator.key][1])
            self.choice_ = (LearnedCorrectnessEstimator.key if self.loglik_z_ < -LOGLIK_Z
                            else CalibratedConfidenceEstimator.key)
            best = -CHUNK_Z
            incumbent = self.choice_
            for k in _CHALLENGERS:
                if k not in errors or incumbent != CalibratedConfidenceEstimator.key:
                    continue
                z, everywhere = chunk_gain_z(errors[k], errors[incumbent], plan.kinds)
                self.chunk_z_[k] = z
                if everywhere and z < best:
                    best, self.choice_ = z, k
            self._set_margins(inputs, y, preds[self.choice_], plan, floor)
        else:
            self.choice_ = keys[0]
        self.members_: dict[str, ClassificationEstimator] = {}
        for k in (_BLEND_OF if self.choice_ == BLEND else (self.choice_,)):
            member = self._member(k)
            member._fit_core(inputs, correct)
            self.members_[k] = member

    def _fit_core(self, inputs: ClassificationInputs, correct: np.ndarray) -> None:
        raise NotImplementedError("AutoCorrectnessEstimator fits through _fit_prepared")

    def _predict_core(self, inputs: ClassificationInputs) -> np.ndarray:
        return np.asarray(np.mean([est._predict_core(inputs) for est in self.members_.values()], axis=0))

    def _calibration_sd(self, inputs: ClassificationInputs) -> np.ndarray:
        return np.asarray(np.mean([est._calibration_sd(inputs) for est in self.members_.values()], axis=0))

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        members: dict[str, Any] = {}
        objects: dict[str, Any] = {}
        for k, est in self.members_.items():
            core, objs = est._core_state()
            members[k] = core
            objects.update({f"{k}.{name}": obj for name, obj in objs.items()})
        return {"choice": self.choice_, "cv_scores": self.cv_scores_, "members": members,
                "loglik_z": getattr(self, "loglik_z_", float("nan")), "chunk_z": self.chunk_z_}, objects

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.choice_ = str(core["choice"])
        self.cv_scores_ = {k: float(v) for k, v in core["cv_scores"].items()}
        self.loglik_z_ = float(core.get("loglik_z", float("nan")))
        self.chunk_z_ = {k: float(v) for k, v in core.get("chunk_z", {}).items()}
        self.members_ = {}
        for k, member_core in core["members"].items():
            if k not in _MEMBERS:
                raise ValueError(f"unknown estimator {k!r} in artifact")
            est = self._member(k)
            prefix = f"{k}."
            est._load_core_state(member_core, {n[len(prefix):]: o for n, o in objects.items() if n.startswith(prefix)})
            self.members_[k] = est
