"""Multilabel correctness estimation (``multilabel``): per-label calibrated probabilities, exact match as a product.

For every known label ``j`` the estimator learns ``q_j = P(label j is in the true set)`` on the reference:

* with scores (``scores`` = one column per label, aligned with ``classes``, as ``ml.prediction.scores`` aligned with
  ``ml.prediction.classes``): a logistic (Platt) calibration of the truth on the logit of the label's score when the
  label has at least :data:`MIN_PER_LABEL` positive and negative reference rows, else the calibration pooled over
  every label's (score, truth) pairs. Logistic rather than isotonic: exact match is a product over labels, and
  isotonic curves' flat 0/1 ends (scores beyond the reference's extremes) make that product overconfident under
  shift, while the logit-linear curve extrapolates smoothly;
* without a score (no score columns, or a NaN score at prediction time): the smoothed rate of the label being true
  given whether it was predicted (pseudo-count :data:`PRIOR_WEIGHT` towards the rate pooled over labels).

The decision on label ``j`` (predicted or not) is right with probability ``q_j`` or ``1 - q_j``. The expected
per-label outcomes are ``tp = d q``, ``fp = d (1 - q)``, ``fn = (1 - d) q`` (additive: the processor exports them
as ``ml.estimated.classification.outcomes`` with ``ml.class`` = label), and the per-row correctness is
``P(exact match) = g(prod_j P(decision on j is right))``: the product treats labels as independent given the
scores, which real models violate (errors cluster on hard samples: on scikit-learn's
``make_multilabel_classification`` the plain product is off by about 0.05), so ``g`` is a logistic recalibration
of the product's logit fitted on out-of-fold products against the realized exact match (identity below
:data:`~otel_ml.estimation.margins.MIN_CV_ROWS` reference rows or without errors). A predicted label the reference
never had contributes the reference's pooled precision of predicted labels.

Window metrics: ``exact_match`` (the accuracy analogue: mean of P(exact match), sampling sd
``sqrt(sum p(1-p)) / n``) and ``f1_macro`` (from expected outcomes; Monte Carlo sd). Intervals and error margins
follow :mod:`otel_ml.estimation` exactly (cross-validated on random and covariate-shifted simulated chunks; below
:data:`~otel_ml.estimation.margins.MIN_CV_ROWS` reference rows, or with no error to learn from, the margin is the
reference exact match's own uncertainty).

API::

    est = MultilabelEstimator().fit(ref, y_true="tags", y_pred="predicted", scores=["p_a", "p_b"],
                                    classes=["a", "b"], features=["x"])
    est.predict_correctness(frame)     # (n,) P(exact match)
    est.predict_details(frame)         # P(exact match), q (n, k), decisions (n, k) bool
    est.estimate(frame)                # Estimate(metric="exact_match", ...)

Label-set cells may be lists/arrays, JSON lists or ``a|b`` strings (:func:`label_set`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from otel_ml.drift.distribution import Distribution
from otel_ml.estimation import _chunks as ch
from otel_ml.estimation import metrics as m
from otel_ml.estimation._inputs import (
    ColumnRoles,
    EstimationError,
    FeatureEncoder,
    Scores,
    as_class_strings,
    score_mapping,
)
from otel_ml.estimation.estimate import Estimate, interval
from otel_ml.estimation.estimator import EstimatorBase
from otel_ml.estimation.margins import MIN_CV_ROWS, chunk_predictions, held_out, margins, out_of_fold, reference_floor
from otel_ml.semconv.attributes import QualityMetric, Task

EXACT_MATCH = QualityMetric.EXACT_MATCH
MULTILABEL_METRICS = (EXACT_MATCH, m.F1_MACRO)
MIN_PER_LABEL = 10
"""Positive and negative reference rows a label needs for its own calibration curve."""
IDENTITY = [1.0, 0.0]
"""Joint recalibration curve that leaves the product unchanged (slope 1, intercept 0 on the logit)."""
PRIOR_WEIGHT = 10.0
"""Pseudo-count pulling a label's decision-conditional rate towards the rate pooled over labels."""


def _logit(s: np.ndarray) -> np.ndarray:
    c = np.clip(s, 1e-6, 1 - 1e-6)
    return np.log(c / (1 - c))


def fit_platt(s: np.ndarray, y: np.ndarray) -> list[float]:
    """``[slope, intercept]`` of P(y) = sigmoid(slope * logit(s) + intercept) (maximum likelihood, light L2)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=100.0).fit(_logit(s).reshape(-1, 1), y.astype(int))
    return [float(lr.coef_[0, 0]), float(lr.intercept_[0])]


def apply_platt(curve: Sequence[float], s: np.ndarray) -> np.ndarray:
    """Evaluates :func:`fit_platt`'s curve."""
    return np.asarray(1 / (1 + np.exp(-(curve[0] * _logit(s) + curve[1]))))


def label_set(value: Any) -> list[str]:
    """A multilabel cell as a list of strings: a list/array, a JSON list, or a ``|``-separated string."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v) for v in as_class_strings(list(value))]
    text = str(value).strip()
    if text.startswith("["):
        try:
            return [str(v) for v in as_class_strings(list(json.loads(text)))]
        except ValueError:
            pass
    return [t for t in (s.strip() for s in text.split("|")) if t]


@dataclass
class MultilabelInputs:
    """Prepared arrays: decisions ``(n, k)`` bool, scores ``(n, k)`` (NaN: none), predicted labels outside the
    reference per row ``(n,)``, and a column matrix for chunk simulation."""

    decisions: np.ndarray
    scores: np.ndarray
    unseen: np.ndarray
    X: np.ndarray

    def __len__(self) -> int:
        return int(self.decisions.shape[0])

    def take(self, idx: np.ndarray) -> MultilabelInputs:
        """Rows ``idx``."""
        return MultilabelInputs(self.decisions[idx], self.scores[idx], self.unseen[idx], self.X[idx])


def _indicator(sets: Sequence[list[str]], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    index = {c: j for j, c in enumerate(classes)}
    out = np.zeros((len(sets), len(classes)), dtype=bool)
    unseen = np.zeros(len(sets), dtype=int)
    for i, s in enumerate(sets):
        for c in s:
            j = index.get(c)
            if j is None:
                unseen[i] += 1
            else:
                out[i, j] = True
    return out, unseen


class MultilabelEstimator(EstimatorBase):
    """Per-label calibrated probabilities (``multilabel``); see the module docstring."""

    key: ClassVar[str] = "multilabel"
    tasks: ClassVar[tuple[str, ...]] = (Task.MULTILABEL,)
    metric_names: ClassVar[tuple[str, ...]] = MULTILABEL_METRICS

    # --- public API --------------------------------------------------------------------------------------------
    def fit(self, reference: pd.DataFrame, *, y_true: str, y_pred: str, scores: Scores = None,
            features: Sequence[str] = (), classes: Sequence[Any] | None = None,
            task: str | None = Task.MULTILABEL, **_: Any) -> Self:
        """Fits on a labeled reference: ``y_true``/``y_pred`` label-set columns, optional per-label ``scores``.

        Raises:
            EstimationError: Missing columns, empty reference, scores not aligned with ``classes``, another task.
        """
        if task not in (None, Task.MULTILABEL):
            raise EstimationError(f"{type(self).__name__} supports tasks {self.tasks}, not {task!r}")
        if not isinstance(reference, pd.DataFrame) or len(reference) == 0:
            raise EstimationError("reference must be a non-empty pandas DataFrame")
        score_cols, classes, _positive = score_mapping(scores, classes)  # {label: column} mappings too
        missing = [c for c in (y_true, y_pred, *score_cols, *features) if c not in reference.columns]
        if missing:
            raise EstimationError(f"reference has no column(s) {missing}")
        truth = [label_set(v) for v in reference[y_true]]
        pred = [label_set(v) for v in reference[y_pred]]
        labels = tuple(str(c) for c in as_class_strings(list(classes))) if classes is not None else tuple(
            sorted({c for s in truth + pred for c in s}))
        if not labels:
            raise EstimationError("reference has no label in any true or predicted set")
        if score_cols and len(score_cols) != len(labels):
            raise EstimationError(f"{len(score_cols)} score columns for {len(labels)} classes: pass one score "
                                  "column per class, aligned with classes")
        self.roles_ = ColumnRoles(task=Task.MULTILABEL, y_pred=y_pred, y_true=y_true, scores=score_cols,
                                  features=tuple(features), classes=labels)
        self.encoder_ = FeatureEncoder.fit(reference, self.roles_.features)
        self.feature_bins_ = {name: Distribution.fit(name, reference[name].to_numpy(dtype=object))
                              for name in self.roles_.features}
        inputs = self._inputs(reference, pred)
        y = _indicator(truth, labels)[0]
        self._fit_prepared(inputs, y)
        return self

    def predict_correctness(self, frame: pd.DataFrame) -> np.ndarray:
        """Per-row P(exact match), shape ``(n,)``."""
        return self.predict_details(frame)[0]

    def predict_details(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """P(exact match) ``(n,)``, per-label P(true) ``(n, k)`` and decisions ``(n, k)`` (aligned with
        ``roles_.classes``): what the processor turns into counters."""
        inputs = self._prepare(frame)
        q = self._label_proba(inputs)
        return self._exact(inputs, q), q, inputs.decisions

    def estimate(self, frame: pd.DataFrame) -> Estimate:
        """Estimated exact-match accuracy of the window with its interval."""
        return self.estimate_metrics(frame, metrics=(EXACT_MATCH,))[EXACT_MATCH]

    def estimate_metrics(self, frame: pd.DataFrame, metrics: Sequence[str] | None = None) -> dict[str, Estimate]:
        """Estimated ``exact_match`` and ``f1_macro`` of the window."""
        names = tuple(m.canonical_metric(x, Task.MULTILABEL) for x in metrics) if metrics is not None \
            else self.metric_names  # f1 is macro-F1 over the labels, as for multiclass
        unknown = [x for x in names if x not in self.metric_names]
        if unknown:
            raise EstimationError(f"cannot estimate {unknown}; this estimator supports {list(self.metric_names)}"
                                  " (f1 = f1_macro over the labels, accuracy = exact_match)")
        inputs = self._prepare(frame)
        values = self._window_values(inputs, self._label_proba(inputs), names,
                                     np.random.default_rng(self.random_state))
        drift = self._drift_allowance(frame)
        return {name: interval(name, v, sd, self.error_margin_.get(name, 0.0), len(inputs), self.key, self.z,
                                self._reference_value(name), drift) for name, (v, sd) in values.items()}

    # --- internals ---------------------------------------------------------------------------------------------
    def _inputs(self, frame: pd.DataFrame, pred: list[list[str]] | None = None) -> MultilabelInputs:
        roles = self.roles_
        n = len(frame)
        if pred is None:
            col = frame[roles.y_pred] if roles.y_pred in frame.columns else pd.Series([None] * n)
            pred = [label_set(v) for v in col]
        decisions, unseen = _indicator(pred, roles.classes)
        scores = np.full((n, len(roles.classes)), np.nan)
        for j, c in enumerate(roles.scores):
            if c in frame.columns:
                scores[:, j] = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
        X = self.encoder_.transform(frame) if roles.features else np.empty((n, 0))
        return MultilabelInputs(decisions, scores, unseen, X)

    def _prepare(self, frame: pd.DataFrame) -> MultilabelInputs:
        self._check_fitted()
        return self._inputs(frame)

    def _fit_core(self, inputs: MultilabelInputs, y: np.ndarray) -> None:
        d = inputs.decisions
        k = d.shape[1]
        pooled_pos = float(y[d].mean()) if d.any() else 0.5
        pooled_neg = float(y[~d].mean()) if (~d).any() else 0.0
        self.prior_ = {"predicted": pooled_pos, "not_predicted": pooled_neg}
        self.rates_: list[list[float]] = []
        for j in range(k):
            on = d[:, j]
            rate_on = (float(y[on, j].sum()) + PRIOR_WEIGHT * pooled_pos) / (on.sum() + PRIOR_WEIGHT)
            rate_off = (float(y[~on, j].sum()) + PRIOR_WEIGHT * pooled_neg) / ((~on).sum() + PRIOR_WEIGHT)
            self.rates_.append([rate_off, rate_on])
        self.curves_: dict[str, list[float]] = {}
        if self.roles_.scores:
            ok = np.isfinite(inputs.scores)
            if ok.any() and 0 < int(y[ok].sum()) < int(ok.sum()):
                self.curves_["all"] = fit_platt(inputs.scores[ok], y[ok])
            for j in range(k):
                sel = ok[:, j]
                pos = int(y[sel, j].sum())
                if pos >= MIN_PER_LABEL and int(sel.sum()) - pos >= MIN_PER_LABEL:
                    self.curves_[str(j)] = fit_platt(inputs.scores[sel, j], y[sel, j])

    def _label_proba(self, inputs: MultilabelInputs) -> np.ndarray:
        rates = np.asarray(self.rates_, dtype=float).reshape(-1, 2)
        d = inputs.decisions
        q = np.where(d, rates[:, 1][None, :], rates[:, 0][None, :]).astype(float)
        if "all" in self.curves_ and q.size:
            for j in range(q.shape[1]):
                s = inputs.scores[:, j]
                ok = np.isfinite(s)
                if ok.any():
                    q[ok, j] = apply_platt(self.curves_.get(str(j), self.curves_["all"]), s[ok])
        return q

    def _product(self, inputs: MultilabelInputs, q: np.ndarray) -> np.ndarray:
        """Product over labels of P(decision right), before the joint recalibration."""
        right = np.where(inputs.decisions, q, 1.0 - q)
        p = np.prod(right, axis=1) if right.shape[1] else np.ones(len(inputs))
        return np.clip(p * float(self.prior_["predicted"]) ** inputs.unseen, 0.0, 1.0)

    def _exact(self, inputs: MultilabelInputs, q: np.ndarray) -> np.ndarray:
        p = self._product(inputs, q)
        return p if self.joint_ == IDENTITY else np.clip(apply_platt(self.joint_, p), 0.0, 1.0)

    def _window_values(self, inputs: MultilabelInputs, q: np.ndarray, metrics: Sequence[str],
                       rng: np.random.Generator | None) -> dict[str, tuple[float, float]]:
        n = len(inputs)
        if n == 0:
            return {name: (float("nan"), float("nan")) for name in metrics}
        d = inputs.decisions
        out: dict[str, tuple[float, float]] = {}
        for name in metrics:
            if name == EXACT_MATCH:
                p = self._exact(inputs, q)
                out[name] = (float(p.mean()), m.accuracy_sd(p))
            elif name == m.F1_MACRO:
                value = m.f1_from_outcomes(*expected_label_outcomes(q, d))
                out[name] = (value, float("nan") if rng is None else _f1_sd(q, d, rng))
        return out

    def _realized(self, inputs: MultilabelInputs, y: np.ndarray) -> dict[str, float]:
        d = inputs.decisions
        exact = np.all(d == y, axis=1) & (inputs.unseen == 0)
        return {EXACT_MATCH: float(exact.mean()),
                m.F1_MACRO: m.f1_from_outcomes(*realized_label_outcomes(y, d))}

    def _fit_prepared(self, inputs: MultilabelInputs, y: np.ndarray) -> None:
        n = len(inputs)
        self.joint_ = list(IDENTITY)
        real = self._realized(inputs, y)
        self.reference_ = {"rows": n, "errors": round(n * (1 - real[EXACT_MATCH])), **real}
        acc = real[EXACT_MATCH]
        floor = reference_floor(acc, n)
        self.error_margin_ = {name: floor for name in self.metric_names}
        self.cv_: dict[str, float] = {}
        if n >= MIN_CV_ROWS and self.reference_["errors"] > 0:
            self._cross_validate(inputs, y, floor)
        self._fit_core(inputs, y)

    def _cross_validate(self, inputs: MultilabelInputs, y: np.ndarray, floor: float) -> None:
        rng = np.random.default_rng(self.random_state)
        n = len(inputs)
        correct = np.all(inputs.decisions == y, axis=1)
        summary = np.nanmean(np.where(inputs.decisions, inputs.scores, 1.0 - inputs.scores), axis=1) \
            if self.roles_.scores else np.zeros(n)
        columns = np.column_stack([inputs.X, np.nan_to_num(summary, nan=0.5), inputs.decisions.sum(axis=1)])
        plan = ch.plan_chunks(columns, correct, min(self.chunk_size or ch.default_chunk_size(n), n), rng)

        def fit_predict(train: np.ndarray, test: np.ndarray) -> np.ndarray:
            est = self._clone()
            est.roles_, est.encoder_ = self.roles_, self.encoder_
            est._fit_core(inputs.take(train), y[train])
            return est._label_proba(inputs.take(test))

        oof = out_of_fold(n, ch.kfold_indices(n, self.cv_folds, rng), fit_predict, rng)
        self.prior_ = {"predicted": float(y[inputs.decisions].mean()) if inputs.decisions.any() else 0.5,
                       "not_predicted": 0.0}
        if 0 < int(correct.sum()) < n:
            # Joint recalibration: labels' errors are rarely independent, so the product of per-label marginals
            # is recalibrated against the realized exact match on out-of-fold products.
            self.joint_ = fit_platt(self._product(inputs, oof), correct)
        preds = chunk_predictions(plan, oof, held_out(n, plan, fit_predict, rng))
        count = len(plan.chunks)
        errors = {name: (np.full(count, np.nan), np.full(count, np.nan)) for name in self.metric_names}
        sd_rng = np.random.default_rng(self.random_state)
        for i, (chunk, q) in enumerate(zip(plan.chunks, preds, strict=True)):
            sub = inputs.take(chunk.rows)
            real = self._realized(sub, y[chunk.rows])
            for name, (value, sd) in self._window_values(sub, q, self.metric_names, sd_rng).items():
                errors[name][0][i] = value - real[name]
                errors[name][1][i] = sd
        self.error_margin_, self.cv_ = margins(errors, dict.fromkeys(errors, floor), self.z, plan.kinds)

    # --- persistence -------------------------------------------------------------------------------------------
    def _core_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"prior": self.prior_, "rates": self.rates_, "curves": self.curves_, "joint": self.joint_}, {}

    def _load_core_state(self, core: Mapping[str, Any], objects: Mapping[str, Any]) -> None:
        self.prior_ = {k: float(v) for k, v in core["prior"].items()}
        self.rates_ = [[float(x) for x in r] for r in core["rates"]]
        self.curves_ = {k: [float(x) for x in v] for k, v in core["curves"].items()}
        self.joint_ = [float(x) for x in core.get("joint", IDENTITY)]

    prior_: dict[str, float]
    joint_: list[float] = IDENTITY


def expected_label_outcomes(q: np.ndarray, decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected per-label (tp, fp, fn) sums, each ``(k,)``, from P(label true) ``q`` and the decisions."""
    d = decisions.astype(float)
    return (d * q).sum(axis=0), (d * (1.0 - q)).sum(axis=0), ((1.0 - d) * q).sum(axis=0)


def realized_label_outcomes(y: np.ndarray, decisions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Realized per-label (tp, fp, fn) counts, each ``(k,)``."""
    d, t = decisions.astype(bool), y.astype(bool)
    return ((d & t).sum(axis=0).astype(float), (d & ~t).sum(axis=0).astype(float),
            (~d & t).sum(axis=0).astype(float))


def _f1_sd(q: np.ndarray, decisions: np.ndarray, rng: np.random.Generator, draws: int = 100) -> float:
    n, k = q.shape
    draws = max(20, min(draws, int(4e6 // max(n * k, 1))))
    values = np.empty(draws)
    for b in range(draws):
        values[b] = m.f1_from_outcomes(*realized_label_outcomes(rng.random((n, k)) < q, decisions))
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if values.shape[0] > 2 else float("nan")
