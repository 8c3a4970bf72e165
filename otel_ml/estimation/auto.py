"""Automatic choice of the correctness estimator per model, cross-validated on the reference.

Candidates: ``cbpe``, ``atc`` (with scores), ``learned`` (with at least :data:`~otel_ml.estimation.learned.MIN_ERRORS`
wrong and right predictions) and ``blend`` (the mean of ``cbpe`` and ``learned``). Each produces out-of-fold
correctness on the reference and is scored on the same simulated random and covariate-shifted chunks
(:mod:`otel_ml.estimation._chunks`; ``cv_scores_``, shown by ``otel-ml reference report``).

The choice is made by held-out likelihood: ``learned`` when its out-of-fold log-loss of "the prediction is right"
beats the calibrated confidence's by more than :data:`LOGLIK_Z` standard errors (paired over reference rows), i.e.
when the features demonstrably carry information about correctness beyond the model's own calibrated confidence;
``cbpe`` otherwise. A correction learned from noise is not harmless: under shift it turns into bias (on NannyML's
work-from-home set, whose scores are the true probabilities, it tripled the error). Chunk MAE did not discriminate
(differences within its noise), the likelihood test does (benchmarks/README.md). The chosen candidate's chunk
errors give the error margins.

Safe fallback: with fewer than :data:`~otel_ml.estimation.margins.MIN_CV_ROWS` rows or too few errors to learn from,
``cbpe`` (calibrated scores, or the smoothed per-class precision without scores) is used without a contest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from otel_ml.estimation import _chunks as ch
from otel_ml.estimation import metrics as m
from otel_ml.estimation._inputs import ClassificationInputs
from otel_ml.estimation.classification import ClassificationEstimator
from otel_ml.estimation.confidence import ATCEstimator, CalibratedConfidenceEstimator
from otel_ml.estimation.learned import LearnedCorrectnessEstimator
from otel_ml.estimation.margins import MIN_CV_ROWS

BLEND = "blend"
_MEMBERS: dict[str, type[ClassificationEstimator]] = {
    CalibratedConfidenceEstimator.key: CalibratedConfidenceEstimator,
    ATCEstimator.key: ATCEstimator,
    LearnedCorrectnessEstimator.key: LearnedCorrectnessEstimator,
}
_BLEND_OF = (CalibratedConfidenceEstimator.key, LearnedCorrectnessEstimator.key)


LOGLIK_Z = 2.0
"""``learned`` is chosen when its held-out log-loss beats ``cbpe``'s by more than this many standard errors."""


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
    """Chooses ``learned`` or ``cbpe`` by held-out log-loss (``auto``; see the module docstring).

    After ``fit``: ``choice_`` is the chosen key (reported as ``ml.estimator``), ``loglik_z_`` the z-statistic of
    the learned model's held-out log-loss gain over ``cbpe`` (NaN when it was not a candidate), ``cv_scores_`` the
    simulated-chunk accuracy MAE of every candidate (``cbpe``, ``atc``, ``learned``, ``blend``) for information,
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
        keys = [k for k, cls in _MEMBERS.items() if cls.available(inputs, correct)]
        if n < MIN_CV_ROWS or LearnedCorrectnessEstimator.key not in keys:
            keys = [CalibratedConfidenceEstimator.key]
        if n >= MIN_CV_ROWS:
            rng = np.random.default_rng(self.random_state)
            folds = ch.kfold_indices(n, self.cv_folds, rng)
            plan = self._plan(inputs, correct, rng)
            results = {k: self._member(k)._cv_predictions(inputs, correct, folds, plan) for k in keys}
            preds = {k: r[0] for k, r in results.items()}
            if all(k in preds for k in _BLEND_OF):
                preds[BLEND] = [np.mean(ps, axis=0) for ps in zip(*(preds[k] for k in _BLEND_OF), strict=True)]
            for k, p in preds.items():
                err, _ = self._chunk_errors(inputs, y, p, plan, (m.ACCURACY,), None)[m.ACCURACY]
                self.cv_scores_[k] = ch.weighted_mae(err, plan.kinds)
            self.loglik_z_ = float("nan")
            if LearnedCorrectnessEstimator.key in results:
                self.loglik_z_ = loss_gain_z(correct, results[LearnedCorrectnessEstimator.key][1],
                                             results[CalibratedConfidenceEstimator.key][1])
            self.choice_ = (LearnedCorrectnessEstimator.key if self.loglik_z_ < -LOGLIK_Z
                            else CalibratedConfidenceEstimator.key)
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

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        members: dict[str, Any] = {}
        objects: dict[str, Any] = {}
        for k, est in self.members_.items():
            core, objs = est._core_state()
            members[k] = core
            objects.update({f"{k}.{name}": obj for name, obj in objs.items()})
        return {"choice": self.choice_, "cv_scores": self.cv_scores_, "members": members,
                "loglik_z": getattr(self, "loglik_z_", float("nan"))}, objects

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.choice_ = str(core["choice"])
        self.cv_scores_ = {k: float(v) for k, v in core["cv_scores"].items()}
        self.loglik_z_ = float(core.get("loglik_z", float("nan")))
        self.members_ = {}
        for k, member_core in core["members"].items():
            if k not in _MEMBERS:
                raise ValueError(f"unknown estimator {k!r} in artifact")
            est = self._member(k)
            prefix = f"{k}."
            est._load_core_state(member_core, {n[len(prefix):]: o for n, o in objects.items() if n.startswith(prefix)})
            self.members_[k] = est
