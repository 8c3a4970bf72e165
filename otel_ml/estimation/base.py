"""Estimator contract: fit on a labeled reference, estimate correctness and quality on unlabeled windows.

See :mod:`otel_ml.estimation` for the manual. Subclasses implement ``_fit_core`` and ``_predict_core`` on prepared
arrays; this module owns column roles, cross-validated error margins, window estimates and persistence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from otel_ml.drift.detectors import MIN_WINDOW
from otel_ml.drift.distribution import Distribution
from otel_ml.drift.methods import jensen_shannon
from otel_ml.estimation import _chunks as ch
from otel_ml.estimation import metrics as m
from otel_ml.estimation._inputs import (
    ClassificationInputs,
    ColumnRoles,
    EstimationError,
    FeatureEncoder,
    RegressionInputs,
    class_codes,
    prepare_classification,
    prepare_regression,
    resolve_roles,
)
from otel_ml.semconv.attributes import Task

Z: float = 1.645
"""Standard deviations of sampling noise in an interval (a two-sided 90 % band before the error margin)."""

SHIFT_ALLOWANCE: float = 0.5
"""Share of the estimated change from the reference metric added to the interval's half-width.

Label-free estimators capture only part of a real quality change (on NannyML's multiclass set both CBPE and a
learned correctness model see about two thirds of the drop); the part they miss grows with the change, so a window
whose estimate moves away from the reference gets a proportionally wider band. Zero for a window estimated at the
reference level."""

DRIFT_ALLOWANCE: float = 0.25
"""Interval widening per unit of feature drift: the window's mean Jensen-Shannon distance (0 = same, 1 = disjoint)
between each feature's binned distribution and the reference's, times this factor, is added to the half-width.
Where production leaves the ground the evaluation set covered, no estimator has evidence; a band that stays narrow
there would be false confidence (on the California set every estimator is off by more than 0.09 in such chunks)."""

MIN_CV_ROWS = 100
"""Below this many reference rows no cross-validation is run; the margin is the reference's own uncertainty."""

CV_FOLDS = 4


@dataclass(frozen=True, slots=True)
class Estimate:
    """A window's estimated metric with its interval.

    ``lower``/``upper`` = ``value -/+ (z * sampling_sd + error_margin + shift_allowance + drift_allowance)``,
    clipped to the metric's range.

    Attributes:
        metric: Metric name (a :class:`~otel_ml.semconv.attributes.QualityMetric` value).
        value: Point estimate (NaN when undefined, e.g. an empty window).
        lower: Lower bound of the interval.
        upper: Upper bound of the interval.
        n: Rows in the window.
        estimator: Key of the estimator that produced it (``cbpe``, ``atc``, ``learned``, ``blend``, ``dle``,
            ``multilabel``).
        sampling_sd: Standard deviation of the realized metric around its expectation (labels drawn from the
            estimated per-row distribution).
        error_margin: Cross-validated estimation error on the reference beyond sampling noise.
        shift_allowance: :data:`SHIFT_ALLOWANCE` times the distance of ``value`` from the reference metric.
        drift_allowance: :data:`DRIFT_ALLOWANCE` times the window's mean feature drift (Jensen-Shannon).
    """

    metric: str
    value: float
    lower: float
    upper: float
    n: int
    estimator: str
    sampling_sd: float
    error_margin: float
    shift_allowance: float = 0.0
    drift_allowance: float = 0.0

    def contains(self, realized: float) -> bool:
        """Whether a realized value falls inside the interval."""
        return bool(self.lower <= realized <= self.upper)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


def _interval(metric: str, value: float, sd: float, margin: float, n: int, key: str, z: float,
              reference: float | None, drift: float) -> Estimate:
    shift = SHIFT_ALLOWANCE * abs(value - reference) if reference is not None and math.isfinite(value) else 0.0
    if metric in m.REGRESSION_METRICS and reference is not None:
        drift *= reference  # errors have the target's scale: widen relative to the reference error
    half = z * (0.0 if not math.isfinite(sd) else sd) + margin + shift + drift
    lo, hi = value - half, value + half
    if metric not in m.REGRESSION_METRICS:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    else:
        lo = max(lo, 0.0)
    return Estimate(metric, value, lo, hi, n, key, sd, margin, shift, drift)


class _EstimatorBase:
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

    def _resolve(self, reference: pd.DataFrame, y_true: str, y_pred: str, scores: str | Sequence[str] | None,
                 features: Sequence[str], classes: Sequence[Any] | None, task: str | None) -> ColumnRoles:
        if not isinstance(reference, pd.DataFrame):
            raise EstimationError(f"reference must be a pandas DataFrame, got {type(reference).__name__}")
        if len(reference) == 0:
            raise EstimationError("reference is empty")
        roles = resolve_roles(reference, y_true=y_true, y_pred=y_pred, scores=scores, features=features,
                              classes=classes, task=task)
        if roles.task not in self.tasks:
            raise EstimationError(f"{type(self).__name__} supports tasks {self.tasks}, not {roles.task!r}")
        self.roles_ = roles
        self.encoder_ = FeatureEncoder.fit(reference, roles.features)
        self.feature_bins_ = {name: Distribution.fit(name, reference[name].to_numpy(dtype=object))
                              for name in roles.features}
        return roles

    def window_drift(self, frame: pd.DataFrame) -> float:
        """Mean Jensen-Shannon distance of the window's features from the reference (NaN: no features or fewer
        than 100 rows)."""
        self._check_fitted()
        bins = getattr(self, "feature_bins_", {})
        if not bins or len(frame) < MIN_WINDOW:
            return float("nan")
        dists = [jensen_shannon(np.asarray(d.counts), d.count(frame[name].to_numpy(dtype=object)))
                 for name, d in bins.items() if name in frame.columns]
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


class ClassificationEstimator(_EstimatorBase):
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
            name: _interval(name, v, sd, self.error_margin_.get(name, 0.0), len(inputs), self.estimator_key, self.z,
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
        n = len(inputs)
        every = np.arange(n)
        oof = np.empty(n)
        for test in folds:
            train = ch.train_rows(np.setdiff1d(every, test, assume_unique=True), rng)
            oof[test] = self._fit_clone(inputs, correct, train)._predict_core(inputs.take(test))
        held_out: list[np.ndarray] = []
        for pool in plan.windows:
            keep = np.ones(n, dtype=bool)
            keep[pool] = False
            p = np.full(n, np.nan)
            p[pool] = self._fit_clone(inputs, correct, ch.train_rows(every[keep], rng))._predict_core(inputs.take(pool))
            held_out.append(p)
        return [oof[c.rows] if c.window < 0 else held_out[c.window][c.rows] for c in plan.chunks], oof

    def _chunk_errors(self, inputs: ClassificationInputs, y: np.ndarray, preds: list[np.ndarray], plan: ch.Plan,
                      metrics: Sequence[str],
                      rng: np.random.Generator | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
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

    def _margin_floor(self, correct: np.ndarray) -> float:
        """Uncertainty of the reference accuracy itself (Wilson half-width; 3/n with no errors)."""
        n = correct.shape[0]
        acc = float(correct.mean())
        if acc in (0.0, 1.0):
            return min(1.0, 3.0 / n)
        return float(1.96 * math.sqrt(acc * (1 - acc) / n))

    def _start(self, inputs: ClassificationInputs, y: np.ndarray) -> tuple[np.ndarray, float]:
        correct = inputs.pred == y
        self.reference_ = {"rows": len(inputs), "errors": int((~correct).sum()),
                           **self._realized(inputs, y, self.metric_names)}
        floor = self._margin_floor(correct)
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
        self.error_margin_ = {name: max(floor, ch.error_margin(e, sd, self.z)) for name, (e, sd) in errors.items()}
        self.cv_ = {name: ch.weighted_mae(e, plan.kinds) for name, (e, _) in errors.items()}


class RegressionEstimator(_EstimatorBase):
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
        return {name: _interval(name, v, sd, self.error_margin_.get(name, 0.0), len(inputs), self.estimator_key,
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
        n = len(inputs)
        every = np.arange(n)

        def fit(rows: np.ndarray) -> RegressionEstimator:
            est = self._clone()
            est.roles_, est.encoder_ = self.roles_, self.encoder_
            est._fit_core(inputs.take(rows), error[rows])
            return est

        oof_abs, oof_sq = np.empty(n), np.empty(n)
        for test in folds:
            oof_abs[test], oof_sq[test] = fit(ch.train_rows(np.setdiff1d(every, test), rng))._predict_core(
                inputs.take(test))
        held: list[tuple[np.ndarray, np.ndarray]] = []
        for pool in plan.windows:
            keep = np.ones(n, dtype=bool)
            keep[pool] = False
            a, q = np.full(n, np.nan), np.full(n, np.nan)
            a[pool], q[pool] = fit(ch.train_rows(every[keep], rng))._predict_core(inputs.take(pool))
            held.append((a, q))
        return [(oof_abs[c.rows], oof_sq[c.rows]) if c.window < 0 else (held[c.window][0][c.rows],
                                                                          held[c.window][1][c.rows])
                for c in plan.chunks]

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
            errs = {name: (np.empty(len(plan.chunks)), np.empty(len(plan.chunks))) for name in self.metric_names}
            for i, (chunk, (p_abs, p_sq)) in enumerate(zip(plan.chunks, preds, strict=True)):
                real = self._realized(error[chunk.rows])
                for name, (v, sd) in self._window_values(p_abs, p_sq, self.metric_names).items():
                    errs[name][0][i], errs[name][1][i] = v - real[name], sd
            self.error_margin_ = {name: max(floor[name], ch.error_margin(e, sd, self.z))
                                  for name, (e, sd) in errs.items()}
            self.cv_ = {name: ch.weighted_mae(e, plan.kinds) for name, (e, _) in errs.items()}
        self._fit_core(inputs, error)
