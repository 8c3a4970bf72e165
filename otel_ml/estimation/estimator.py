"""The base every estimator shares: parameters, column roles, feature drift of a window, state (de)serialization.

See :mod:`otel_ml.estimation` for the manual. :class:`~otel_ml.estimation.classification.ClassificationEstimator`,
:class:`~otel_ml.estimation.regression.RegressionEstimator` and
:class:`~otel_ml.estimation.multilabel.MultilabelEstimator` build on it. A fitted estimator's state is JSON plus a
mapping of scikit-learn objects (:meth:`EstimatorBase.to_state`), which :mod:`otel_ml.reference` saves with skops,
never pickle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from otel_ml.drift.detectors import MIN_WINDOW
from otel_ml.drift.distribution import Distribution
from otel_ml.drift.methods import jensen_shannon
from otel_ml.estimation._inputs import ColumnRoles, EstimationError, FeatureEncoder, Scores, resolve_roles
from otel_ml.estimation.estimate import DRIFT_ALLOWANCE, Z
from otel_ml.estimation.margins import CV_FOLDS
from otel_ml.estimation.novelty import SupportModel


class EstimatorBase:
    """Shared parameters and state of every estimator."""

    key: ClassVar[str] = ""
    tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, random_state: int = 0, z: float = Z, cv_folds: int = CV_FOLDS,
                 chunk_size: int | None = None) -> None:
        self.random_state = random_state
        self.z = z
        self.cv_folds = cv_folds
        self.chunk_size = chunk_size

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (sklearn style)."""
        return {"random_state": self.random_state, "z": self.z, "cv_folds": self.cv_folds,
                "chunk_size": self.chunk_size}

    def _clone(self) -> Self:
        return type(self)(**self.get_params())

    def _check_fitted(self) -> None:
        if not hasattr(self, "roles_"):
            raise EstimationError(f"{type(self).__name__} is not fitted: call fit(reference, ...) first")

    @property
    def estimator_key(self) -> str:
        """Key reported on metrics (``ml.estimator``); the chosen method for automatic estimators."""
        return self.key

    def _resolve(self, reference: pd.DataFrame, y_true: str, y_pred: str, scores: Scores,
                 features: Sequence[str], classes: Sequence[Any] | None, task: str | None,
                 positive_class: Any = None) -> ColumnRoles:
        if not isinstance(reference, pd.DataFrame):
            raise EstimationError(f"reference must be a pandas DataFrame, got {type(reference).__name__}")
        if len(reference) == 0:
            raise EstimationError("reference is empty")
        roles = resolve_roles(reference, y_true=y_true, y_pred=y_pred, scores=scores, features=features,
                              classes=classes, task=task, positive_class=positive_class)
        if roles.task not in self.tasks:
            raise EstimationError(f"{type(self).__name__} supports tasks {self.tasks}, not {roles.task!r}")
        self.roles_ = roles
        self.encoder_ = FeatureEncoder.fit(reference, roles.features)
        self.feature_bins_ = {name: Distribution.fit(name, reference[name].to_numpy(dtype=object))
                              for name in roles.features}
        self.support_ = SupportModel.fit(self.encoder_.transform(reference),
                                         [self.encoder_.is_categorical(n) for n in self.encoder_.names],
                                         random_state=self.random_state)
        return roles

    def novelty_pvalues(self, frame: pd.DataFrame) -> np.ndarray:
        """Novelty p-value of each row (:mod:`otel_ml.estimation.novelty`); NaN without a support model."""
        self._check_fitted()
        return self._pvalues(self.encoder_.transform(frame))

    def _pvalues(self, X: np.ndarray) -> np.ndarray:
        support = getattr(self, "support_", None)
        return np.full(X.shape[0], np.nan) if support is None else support.pvalues(X)

    def missing_features(self, frame: pd.DataFrame) -> dict[str, int]:
        """Rows of ``frame`` without a value for each reference feature (an absent column: every row)."""
        self._check_fitted()
        return {name: len(frame) if name not in frame.columns else int(frame[name].isna().sum())
                for name in self.roles_.features}

    def window_drift(self, frame: pd.DataFrame) -> float:
        """Mean Jensen-Shannon distance of the window's features from the reference (NaN: no features or fewer
        than 100 rows)."""
        self._check_fitted()
        bins = getattr(self, "feature_bins_", {})
        if not bins or len(frame) < MIN_WINDOW:
            return float("nan")
        # A feature the window lacks entirely counts as missing in every row (drift toward the missing bin), not as
        # absent from the average: a window without the features the estimate relies on must not look calmer.
        absent = np.full(len(frame), None, dtype=object)
        dists = [jensen_shannon(np.asarray(d.counts),
                                d.count(frame[name].to_numpy(dtype=object) if name in frame.columns else absent))
                 for name, d in bins.items()]
        dists = [x for x in dists if math.isfinite(x)]
        return float(np.mean(dists)) if dists else float("nan")

    def _drift_allowance(self, frame: pd.DataFrame) -> float:
        drift = self.window_drift(frame)
        return DRIFT_ALLOWANCE * drift if math.isfinite(drift) else 0.0

    def _reference_value(self, metric: str) -> float | None:
        value = self.reference_.get(metric)
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    # --- persistence -------------------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """JSON-serialisable state and a mapping of scikit-learn objects (saved with skops, never pickle)."""
        self._check_fitted()
        core, objects = self._core_state()
        state = {
            "key": self.key, "params": self.get_params(), "roles": self.roles_.to_json(),
            "encoder": self.encoder_.to_json(), "error_margin": self.error_margin_,
            "reference": self.reference_, "core": core,
            "feature_bins": {k: d.to_json() for k, d in getattr(self, "feature_bins_", {}).items()},
        }
        support = getattr(self, "support_", None)
        if support is not None:
            state["support"] = support.to_json()
        return state, objects

    @classmethod
    def from_state(cls, state: Mapping[str, Any], objects: Mapping[str, Any]) -> Self:
        """Inverse of :meth:`to_state`."""
        est = cls(**state["params"])
        est.roles_ = ColumnRoles.from_json(state["roles"])
        est.encoder_ = FeatureEncoder.from_json(state["encoder"])
        est.error_margin_ = {k: float(v) for k, v in state["error_margin"].items()}
        est.reference_ = dict(state["reference"])
        est.feature_bins_ = {k: Distribution.from_json(v) for k, v in state.get("feature_bins", {}).items()}
        # Artifacts fitted before novelty was measured have no support model: their novelty is unknown (NaN).
        est.support_ = SupportModel.from_json(state["support"]) if "support" in state else None
        est._load_core_state(state["core"], objects)
        return est

    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {}, {}

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        pass

    roles_: ColumnRoles
    encoder_: FeatureEncoder
    error_margin_: dict[str, float]
    reference_: dict[str, Any]
    feature_bins_: dict[str, Distribution]
    support_: SupportModel | None
