"""Estimation/drift stage: applies reference artifacts to incoming predictions.

Loaded by the processor when the config has a ``reference:`` section (see :mod:`otel_ml.processor.stage`).

* **Artifacts**: ``<reference.directory>/<model>/<version>/`` for a specific model version, else
  ``<reference.directory>/<model>/default/``. The directory is re-scanned every ``reference.reload_interval``; an
  artifact whose manifest changed is reloaded; one that fails verification (tampered, unknown format version) is
  refused with an error log and the previously loaded one, if any, stays in use.
* **Every accepted prediction** of a model with a reference (labeled or not, so the estimate covers the same traffic
  as ``ml.predictions`` and can be compared with realized quality where labels arrive) adds, per ``ml.segment``:

  - classification: ``ml.estimated.predictions`` (+1), ``ml.estimated.correct_predictions`` (+p),
    ``ml.estimated.correct_variance`` (+p(1-p)), ``ml.estimated.classification.outcomes`` (expected tp/fp/fn per
    class), all with ``ml.estimator`` = the artifact's chosen estimator;
  - multilabel: the same four counters, with P(exact match) as the correctness and expected tp/fp/fn per label
    (``ml.class`` = label), from :class:`~otel_ml.estimation.multilabel.MultilabelEstimator` (scores read from
    ``ml.prediction.scores`` aligned with ``ml.prediction.classes``);
  - regression: ``ml.estimated.predictions``, ``ml.estimated.regression.absolute_error``, ``.squared_error`` and
    ``.absolute_error_variance`` (per-row ``max(E[e^2] - E[|e|]^2, 0)``, the sampling variance of the summed
    absolute error);
  - drift and novelty: ``ml.unseen_class_predictions`` (by class, capped), ``ml.feature.bin.observations`` (per
    feature and reference bin), ``ml.weak_segment.predictions`` (per weak slice the prediction falls in).
* **Ranking** references (no correctness estimator): unseen items (``ml.unseen_class_predictions``, ``ml.class``
  = item id, capped; only when the evaluation set's catalogue was small enough to keep), the item mix
  (``ml.prediction.drift``), ranked-list length against the reference (``ml.multilabel.set_size_drift``) and the
  weak list-length slices; baselines ``mrr`` and ``precision_at_k`` / ``ndcg_at_k`` with ``ml.ranking.k``.
* **Gauges**, refreshed on every tick: ``ml.reference.metric`` (evaluation-set baselines),
  ``ml.estimator.error_margin``, and the drift of the last :data:`~otel_ml.drift.detectors.DEFAULT_WINDOW`
  predictions against the reference: ``ml.feature.drift``, ``ml.prediction.drift`` and
  ``ml.multilabel.set_size_drift`` (``psi``, ``jensen_shannon`` and ``ks``; no point below 100 observations).
* **Samples to relabel** (:mod:`otel_ml.drift.relabel`): per batch at most :data:`SAMPLES_PER_BATCH` per reason:
  unseen classes, the lowest estimated correctness below :data:`LOW_CONFIDENCE_P` (regression: an expected absolute
  error above twice the reference MAE), and predictions with a feature outside the reference's range or
  vocabulary; counted in ``ml.relabel.samples``.

Interval in PromQL (any window, summed over replicas)::

    est = increase(ml_estimated_correct_predictions_total[w]) / increase(ml_estimated_predictions_total[w])
    half = 1.645 * sqrt(increase(ml_estimated_correct_variance_total[w])) / increase(ml_estimated_predictions_total[w])
           + ml_estimator_error_margin_ratio{ml_metric="accuracy"}
           + 0.5 * abs(est - ml_reference_metric_ratio{ml_metric="accuracy"})
           + 0.25 * avg(ml_feature_drift_ratio{ml_drift_method="jensen_shannon"})

Regression (estimated MAE and its band)::

    mae  = increase(ml_estimated_regression_absolute_error_total[w]) / increase(ml_estimated_predictions_total[w])
    half = 1.645 * sqrt(increase(ml_estimated_regression_absolute_error_variance_total[w]))
             / increase(ml_estimated_predictions_total[w])
           + ml_estimator_error_margin_ratio{ml_metric="mae"}
           + 0.5 * abs(mae - ml_reference_metric_ratio{ml_metric="mae"})
           + 0.25 * avg(ml_feature_drift_ratio{ml_drift_method="jensen_shannon"})
                  * ml_reference_metric_ratio{ml_metric="mae"}

(1.645, 0.5 and 0.25 are :data:`otel_ml.estimation.base.Z`, :data:`~otel_ml.estimation.base.SHIFT_ALLOWANCE` and
:data:`~otel_ml.estimation.base.DRIFT_ALLOWANCE`; the drift gauge covers the last 5000 predictions rather than the
PromQL window, an approximation.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from otel_ml.drift.detectors import UnseenClassCounter, WindowedDrift
from otel_ml.drift.distribution import Distribution
from otel_ml.drift.relabel import DRIFT, LOW_CONFIDENCE, UNSEEN_CLASS, RelabelSink
from otel_ml.estimation import ClassificationEstimator, MultilabelEstimator, RegressionEstimator
from otel_ml.estimation import metrics as em
from otel_ml.estimation.multilabel import expected_label_outcomes
from otel_ml.processor.stage import BaseStage, MetricSink, PredictionBatch, StageContext
from otel_ml.reference.artifact import MANIFEST, ArtifactError, ReferenceArtifact, load
from otel_ml.reference.fit import AT_K
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome, Task

_logger = logging.getLogger(__name__)

DEFAULT_DIR = "default"
LOW_CONFIDENCE_P = 0.5
"""Predictions estimated less likely than this to be right are relabel candidates."""
SAMPLES_PER_BATCH = 10
SET_SIZE = "set_size"


@dataclass
class _Loaded:
    artifact: ReferenceArtifact
    signature: tuple[float, int]
    path: Path


@dataclass
class _Runtime:
    """Per (model, traffic version): drift windows against the artifact in use."""

    loaded: _Loaded
    features: dict[str, WindowedDrift] = field(default_factory=dict)
    prediction: WindowedDrift | None = None
    set_size: WindowedDrift | None = None
    unseen: UnseenClassCounter | None = None

    @classmethod
    def build(cls, loaded: _Loaded) -> _Runtime:
        art = loaded.artifact
        rt = cls(loaded, {name: WindowedDrift(d) for name, d in art.feature_distributions.items()})
        pred = art.distribution("prediction")
        if pred is not None:
            rt.prediction = WindowedDrift(pred)
        size = art.distribution(SET_SIZE)
        if size is not None:
            rt.set_size = WindowedDrift(size)
        if art.classes:
            rt.unseen = UnseenClassCounter(art.classes)
        return rt


class EstimationStage(BaseStage):
    """The built-in estimation/drift stage (see the module docstring)."""

    name = "estimation"

    def __init__(self, directory: str | Path, *, reload_interval: float, relabel_path: str | Path | None,
                 relabel_max_samples: int, clock: Callable[[], float]) -> None:
        self.directory = Path(directory)
        self.reload_interval = reload_interval
        self.clock = clock
        self.relabel = RelabelSink(relabel_path, relabel_max_samples) if relabel_path else None
        self._loaded: dict[tuple[str, str], _Loaded] = {}
        self._runtime: dict[tuple[str, str], _Runtime] = {}
        self._warned: set[tuple[str, str, str]] = set()
        self._last_scan = -math.inf
        self.scan()

    # --- artifacts -------------------------------------------------------------------------------------------------
    def scan(self) -> None:
        """Loads new and changed artifacts; drops removed ones. Never raises."""
        self._last_scan = self.clock()
        seen: set[tuple[str, str]] = set()
        try:
            model_dirs = [p for p in self.directory.iterdir() if p.is_dir()] if self.directory.is_dir() else []
        except OSError:
            _logger.exception("cannot list reference directory %s", self.directory)
            return
        for model_dir in model_dirs:
            try:
                version_dirs = [p for p in model_dir.iterdir() if (p / MANIFEST).is_file()]
            except OSError:
                continue
            for vdir in version_dirs:
                key = (model_dir.name, vdir.name)
                seen.add(key)
                try:
                    st = (vdir / MANIFEST).stat()
                except OSError:
                    continue
                signature = (st.st_mtime, st.st_size)
                current = self._loaded.get(key)
                if current is not None and current.signature == signature:
                    continue
                try:
                    art = load(vdir)
                except ArtifactError as exc:
                    _logger.error("refusing reference %s: %s%s", vdir, exc,
                                  " (keeping the previously loaded one)" if current else "")
                    if current is not None:
                        self._loaded[key] = _Loaded(current.artifact, signature, vdir)
                    continue
                except Exception:  # a broken artifact must not stop the processor
                    _logger.exception("cannot load reference %s", vdir)
                    continue
                _logger.info("loaded reference %s (model %s, task %s)", vdir, art.model, art.task)
                self._loaded[key] = _Loaded(art, signature, vdir)
                for rkey in [k for k, rt in self._runtime.items() if rt.loaded.path == vdir]:
                    del self._runtime[rkey]
        for key in set(self._loaded) - seen:
            _logger.info("reference %s/%s removed", *key)
            gone = self._loaded.pop(key)
            for rkey in [k for k, rt in self._runtime.items() if rt.loaded.path == gone.path]:
                del self._runtime[rkey]

    def _runtime_for(self, model: str, version: str) -> _Runtime | None:
        rt = self._runtime.get((model, version))
        if rt is not None:
            return rt
        loaded = (self._loaded.get((model, version)) if version else None) or self._loaded.get((model, DEFAULT_DIR))
        if loaded is None:
            return None
        rt = self._runtime[(model, version)] = _Runtime.build(loaded)
        return rt

    def _warn_once(self, model: str, version: str, message: str) -> None:
        if (model, version, message) not in self._warned:
            self._warned.add((model, version, message))
            _logger.warning("model %s version %r: %s", model, version, message)

    # --- hooks -----------------------------------------------------------------------------------------------------
    def on_predictions(self, batch: PredictionBatch, sink: MetricSink) -> None:
        """Estimated correctness, drift counts, weak-segment counts and relabel samples of one batch."""
        rt = self._runtime_for(batch.model, batch.version)
        if rt is None or len(batch) == 0:
            return
        art = rt.loaded.artifact
        if art.task != batch.task:
            self._warn_once(batch.model, batch.version, f"reference is for task {art.task}, traffic is {batch.task}")
            return
        model_attrs = {a.ML_MODEL_NAME: batch.model, a.ML_MODEL_VERSION: batch.version}
        p: np.ndarray | None = None
        abs_e: np.ndarray | None = None
        est = art.estimator
        frame = batch_frame(batch, art) if est is not None else None
        if isinstance(est, ClassificationEstimator) and frame is not None:
            p, class_proba, pred_codes = est.predict_details(frame)
            self._correctness_counters(batch, art.classes, est.estimator_key, p,
                                       lambda idx: em.expected_outcomes(class_proba[idx], pred_codes[idx]), sink)
        elif isinstance(est, MultilabelEstimator) and frame is not None:
            p, q, decisions = est.predict_details(frame)
            self._correctness_counters(batch, art.classes, est.key, p,
                                       lambda idx: expected_label_outcomes(q[idx], decisions[idx]), sink)
        elif isinstance(est, RegressionEstimator) and frame is not None:
            abs_e = est.predict_correctness(frame)
            sq_e = est.predict_squared_error(frame)
            for seg, idx in _by_segment(batch.segments, len(batch)):
                attrs = _seg_attrs(model_attrs, seg, est.estimator_key)
                sink.add(m.ESTIMATED_PREDICTIONS, float(idx.size), attrs)
                sink.add(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR, float(abs_e[idx].sum()), attrs)
                sink.add(m.ESTIMATED_REGRESSION_SQUARED_ERROR, float(sq_e[idx].sum()), attrs)
                sink.add(m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR_VARIANCE,
                         float(np.maximum(sq_e[idx] - abs_e[idx] ** 2, 0.0).sum()), attrs)
        unseen_rows = self._novelty_counters(batch, rt, model_attrs, sink)
        outside = self._feature_counters(batch, rt, model_attrs, sink)
        self._weak_segment_counters(batch, art, model_attrs, sink)
        if self.relabel is not None:
            self._relabel(batch, art, p, abs_e, unseen_rows, outside, sink)

    def on_tick(self, now: float, sink: MetricSink) -> None:
        """Reloads artifacts when due; refreshes the baseline, margin and drift gauges."""
        if now - self._last_scan >= self.reload_interval:
            self.scan()
        for (model, version), rt in self._runtime.items():
            art = rt.loaded.artifact
            attrs = {a.ML_MODEL_NAME: model, a.ML_MODEL_VERSION: version}
            for metric, value in art.metrics.items():
                if metric != "rows" and isinstance(value, int | float):
                    name, _, k = metric.partition(AT_K)  # ranking: precision_at_k@5 -> (precision_at_k, k=5)
                    point = {**attrs, a.ML_METRIC: name, **({a.ML_RANKING_K: k} if k else {})}
                    sink.set_gauge(m.REFERENCE_METRIC, float(value), point)
            if art.estimator is not None:
                for metric, margin in art.estimator.error_margin_.items():
                    sink.set_gauge(m.ESTIMATOR_ERROR_MARGIN, float(margin), {**attrs, a.ML_METRIC: metric})
            for name, drift in rt.features.items():
                for method, value in drift.scores().items():
                    sink.set_gauge(m.FEATURE_DRIFT, value,
                                   {**attrs, a.ML_FEATURE_NAME: name, a.ML_DRIFT_METHOD: method})
            if rt.prediction is not None:
                for method, value in rt.prediction.scores().items():
                    sink.set_gauge(m.PREDICTION_DRIFT, value, {**attrs, a.ML_DRIFT_METHOD: method})
            if rt.set_size is not None:
                for method, value in rt.set_size.scores().items():
                    sink.set_gauge(m.SET_SIZE_DRIFT, value, {**attrs, a.ML_DRIFT_METHOD: method})

    # --- pieces ----------------------------------------------------------------------------------------------------
    def _correctness_counters(self, batch: PredictionBatch, classes: Sequence[str], key: str, p: np.ndarray,
                              outcomes: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]],
                              sink: MetricSink) -> None:
        """Estimated correct sums, their variance and expected per-class tp/fp/fn, per segment.

        ``outcomes(idx)`` gives the expected tp, fp and fn per class (multiclass: from calibrated class
        probabilities; multilabel: per label) of the rows ``idx``.
        """
        model_attrs = {a.ML_MODEL_NAME: batch.model, a.ML_MODEL_VERSION: batch.version}
        for seg, idx in _by_segment(batch.segments, len(batch)):
            attrs = _seg_attrs(model_attrs, seg, key)
            ps = p[idx]
            sink.add(m.ESTIMATED_PREDICTIONS, float(idx.size), attrs)
            sink.add(m.ESTIMATED_CORRECT_PREDICTIONS, float(ps.sum()), attrs)
            sink.add(m.ESTIMATED_CORRECT_VARIANCE, float(np.sum(ps * (1.0 - ps))), attrs)
            tp, fp, fn = outcomes(idx)
            for c, cls in enumerate(classes):
                for outcome, values in ((Outcome.TP, tp), (Outcome.FP, fp), (Outcome.FN, fn)):
                    if values[c] > 0:
                        sink.add(m.ESTIMATED_CLASSIFICATION_OUTCOMES, float(values[c]),
                                 {**attrs, a.ML_CLASS: cls, a.ML_OUTCOME: outcome})

    def _novelty_counters(self, batch: PredictionBatch, rt: _Runtime, attrs: Mapping[str, str],
                          sink: MetricSink) -> np.ndarray:
        """Unseen classes, prediction and set-size windows; returns which rows predicted an unseen class."""
        n = len(batch)
        unseen_rows = np.zeros(n, dtype=bool)
        if batch.task in Task.CLASSIFICATION and isinstance(batch.values, list):
            predicted: list[str] = batch.values
            if rt.unseen is not None:
                unseen_rows = np.asarray([rt.unseen.is_unseen(v) for v in predicted], dtype=bool)
                counts = rt.unseen.observe(predicted)
            else:
                counts = {}
            if rt.prediction is not None:
                rt.prediction.observe(predicted)
        elif batch.task in (Task.MULTILABEL, Task.RANKING) and batch.value_lists is not None:
            flat = [c for s in batch.value_lists for c in s]
            counts = rt.unseen.observe(flat) if rt.unseen is not None else {}
            if rt.unseen is not None:
                unseen_rows = np.asarray([any(rt.unseen.is_unseen(c) for c in s) for s in batch.value_lists])
            if rt.prediction is not None:
                rt.prediction.observe(flat)
            if rt.set_size is not None:
                rt.set_size.observe([float(len(s)) for s in batch.value_lists])
        else:
            counts = {}
            if rt.prediction is not None and isinstance(batch.values, np.ndarray):
                rt.prediction.observe(batch.values)
        for cls, count in counts.items():
            sink.add(m.UNSEEN_CLASS_PREDICTIONS, float(count), {**attrs, a.ML_CLASS: cls})
        return unseen_rows

    def _feature_counters(self, batch: PredictionBatch, rt: _Runtime, attrs: Mapping[str, str],
                          sink: MetricSink) -> dict[str, np.ndarray]:
        """Per-bin feature counts (only features the batch carries); returns out-of-reference rows per feature."""
        outside: dict[str, np.ndarray] = {}
        for name, drift in rt.features.items():
            values = batch.features.get(name)
            if values is None:
                continue
            counts = drift.observe(values)
            for label, count in zip(drift.reference.labels, counts, strict=True):
                if count > 0:
                    sink.add(m.FEATURE_BIN_OBSERVATIONS, float(count),
                             {**attrs, a.ML_FEATURE_NAME: name, a.ML_BIN: label})
            outside[name] = drift.reference.outside(values)
        return outside

    def _weak_segment_counters(self, batch: PredictionBatch, art: ReferenceArtifact, attrs: Mapping[str, str],
                               sink: MetricSink) -> None:
        if not art.weak_segments:
            return
        n = len(batch)
        parsed: list[dict[str, str]] | None = None
        for weak in art.weak_segments:
            hit: np.ndarray | None = None
            if weak.kind == "segment":
                if parsed is None:
                    parsed = [_parse_segment(s) for s in batch.segments] if batch.segments else [{}] * n
                hit = np.asarray([d.get(weak.column) == weak.bin for d in parsed], dtype=bool)
            elif weak.kind == "feature":
                dist = art.feature_distributions.get(weak.column)
                values = batch.features.get(weak.column)
                if dist is not None and values is not None:
                    hit = _in_bin(dist, values, weak.bin)
            elif weak.kind == SET_SIZE and batch.value_lists is not None:
                dist = art.distribution(SET_SIZE)
                if dist is not None:
                    hit = _in_bin(dist, [float(len(s)) for s in batch.value_lists], weak.bin)
            if hit is not None and hit.any():
                sink.add(m.WEAK_SEGMENT_PREDICTIONS, float(hit.sum()), {**attrs, a.ML_WEAK_SEGMENT: weak.name})

    def _relabel(self, batch: PredictionBatch, art: ReferenceArtifact, p: np.ndarray | None,
                 abs_e: np.ndarray | None, unseen_rows: np.ndarray, outside: Mapping[str, np.ndarray],
                 sink: MetricSink) -> None:
        assert self.relabel is not None
        chosen: dict[int, tuple[str, str]] = {}
        for i in np.flatnonzero(unseen_rows)[:SAMPLES_PER_BATCH]:
            value = batch.values[i] if isinstance(batch.values, list) else batch.value_lists[i] if batch.value_lists \
                else None
            chosen[int(i)] = (UNSEEN_CLASS, f"predicted class not in the evaluation set: {value!r}")
        if p is not None:
            low = np.flatnonzero(p < LOW_CONFIDENCE_P)
            for i in low[np.argsort(p[low], kind="stable")][:SAMPLES_PER_BATCH]:
                chosen.setdefault(int(i), (LOW_CONFIDENCE, f"estimated correctness {p[i]:.3f}"))
        elif abs_e is not None:
            limit = 2.0 * float(art.metrics.get("mae", math.inf))
            high = np.flatnonzero(abs_e > limit)
            for i in high[np.argsort(-abs_e[high], kind="stable")][:SAMPLES_PER_BATCH]:
                chosen.setdefault(int(i), (LOW_CONFIDENCE, f"expected absolute error {abs_e[i]:.4g} > {limit:.4g}"))
        drifted = 0
        for name, rows in outside.items():
            for i in np.flatnonzero(rows):
                if drifted >= SAMPLES_PER_BATCH:
                    break
                if int(i) not in chosen:
                    chosen[int(i)] = (DRIFT, f"feature {name}={batch.features[name][i]!r} outside the evaluation set")
                    drifted += 1
        if not chosen:
            return
        samples = []
        for i, (reason, detail) in sorted(chosen.items()):
            prediction: Any = (batch.values[i] if batch.values is not None
                               else batch.value_lists[i] if batch.value_lists is not None else None)
            samples.append({
                "timestamp": float(batch.timestamps[i]), "model": batch.model, "version": batch.version,
                "prediction_id": batch.ids[i], "reason": reason, "detail": detail,
                "estimated_correctness": None if p is None else float(p[i]),
                "expected_abs_error": None if abs_e is None else float(abs_e[i]),
                "prediction": prediction, "segment": batch.segments[i] if batch.segments else "",
                "features": {k: v[i] for k, v in batch.features.items()},
            })
        written = self.relabel.write(samples)
        by_reason: dict[str, int] = {}
        for sample in samples[:written]:
            by_reason[sample["reason"]] = by_reason.get(sample["reason"], 0) + 1
        for reason, count in by_reason.items():
            sink.add(m.RELABEL_SAMPLES, float(count), {a.ML_MODEL_NAME: batch.model, a.ML_REASON: reason})


# --- helpers ---------------------------------------------------------------------------------------------------------
def batch_frame(batch: PredictionBatch, art: ReferenceArtifact) -> pd.DataFrame:
    """The batch as the DataFrame the artifact's estimator was fitted on (its column names)."""
    est = art.estimator
    assert est is not None
    roles = est.roles_
    n = len(batch)
    cols: dict[str, Any] = {}
    if roles.is_classification or roles.task == Task.MULTILABEL:
        if roles.task == Task.MULTILABEL:
            cols[roles.y_pred] = list(batch.value_lists) if batch.value_lists is not None else [[]] * n
        else:
            cols[roles.y_pred] = list(batch.values) if batch.values is not None else [None] * n
        if roles.scores:
            cols.update(_score_columns(batch, roles.scores, list(roles.classes)))
    else:
        cols[roles.y_pred] = np.asarray(batch.values if batch.values is not None else np.full(n, np.nan), dtype=float)
    for name in roles.features:
        values = batch.features.get(name)
        cols[name] = pd.Series(values if values is not None else [None] * n, dtype=object)
    frame = pd.DataFrame(cols, index=range(n))
    for name in roles.features:  # numeric features typed as numbers, as in the reference
        if name not in est.encoder_.categories:
            frame[name] = pd.to_numeric(frame[name], errors="coerce")
    return frame


def _score_columns(batch: PredictionBatch, score_cols: tuple[str, ...], classes: list[str]) -> dict[str, np.ndarray]:
    n = len(batch)
    matrix = np.full((n, len(classes)), np.nan)
    if batch.score_matrix is not None and batch.classes is not None:
        index = {c: j for j, c in enumerate(batch.classes)}
        for k, cls in enumerate(classes):
            j = index.get(cls)
            if j is not None:
                matrix[:, k] = batch.score_matrix[:, j]
    if len(classes) == 2 and batch.task == Task.BINARY and batch.scores is not None:
        # Binary: ml.prediction.score is P(positive = last class); fill rows without a score vector.
        pos = np.asarray(batch.scores, dtype=float)
        fill = np.isnan(matrix[:, 1]) & np.isfinite(pos)
        matrix[fill, 1] = pos[fill]
        matrix[fill, 0] = 1.0 - pos[fill]
    if len(score_cols) == 1:
        return {score_cols[0]: matrix[:, -1]}
    return {col: matrix[:, k] for k, col in enumerate(score_cols)}


def _by_segment(segments: list[str], n: int) -> list[tuple[str, np.ndarray]]:
    if not segments:
        return [("", np.arange(n))]
    arr = np.asarray(segments, dtype=object)
    return [(str(s), np.flatnonzero(arr == s)) for s in dict.fromkeys(segments)]


def _seg_attrs(model_attrs: Mapping[str, str], segment: str, estimator: str) -> dict[str, str]:
    attrs = {**model_attrs, a.ML_ESTIMATOR: estimator}
    if segment:
        attrs[a.ML_SEGMENT] = segment
    return attrs


def _parse_segment(segment: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in segment.split(","):
        key, sep, value = part.partition("=")
        if sep:
            out[key] = value
    return out


def _in_bin(dist: Distribution, values: Any, label: str) -> np.ndarray:
    labels = dist.labels
    if label not in labels:
        return np.zeros(len(values), dtype=bool)
    return np.asarray(dist.bin_indices(values) == labels.index(label))


def create_stage(context: StageContext) -> EstimationStage:
    """Factory loaded by the processor when the config has a ``reference:`` section."""
    ref = context.config.reference
    if ref is None:
        raise ValueError("the estimation stage needs a `reference:` section (reference.directory)")
    relabel = context.config.relabel
    return EstimationStage(ref.directory, reload_interval=ref.reload_interval, relabel_path=relabel.path,
                           relabel_max_samples=relabel.max_samples, clock=context.clock)
