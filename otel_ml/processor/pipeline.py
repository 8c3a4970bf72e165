"""One processing step: decoded requests -> store ingest and joins -> metric deltas -> stages -> one commit.

:class:`Pipeline` is synchronous and single-threaded (the :mod:`~otel_ml.processor.writer` thread owns it), so it can
be tested without a network. A step either commits everything (records, joins, aggregate totals) or nothing; only
after the commit does it publish the totals to the :class:`~otel_ml.processor.aggregates.Aggregates` mirror and
update the in-memory ROC-AUC windows (saved to the store by :meth:`Pipeline.tick` every
:data:`AUC_SAVE_INTERVAL_S` and by :meth:`Pipeline.close`, restored at construction).
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import eq, itemgetter
from typing import Any, Final

import numpy as np

from otel_ml.processor.aggregates import Aggregates, Attrs, Capper, Step
from otel_ml.processor.config import ProcessorConfig
from otel_ml.processor.decode import Decoded, Extra
from otel_ml.processor.records import (
    L_LIST,
    L_NUM,
    L_REL,
    L_STR,
    L_TS,
    MODEL,
    P_AUX,
    P_LIST,
    P_NUM,
    P_STR,
    P_TS,
    SCORE,
    SEGMENT,
    SEP,
    TASK,
    VERSION,
    Row,
    is_prediction,
    prediction_id,
)
from otel_ml.processor.stage import MetricSink, PredictionBatch, Stage
from otel_ml.processor.store.base import BaseJoinStore, IngestResult
from otel_ml.quality import classification_sums, multilabel_sums, ranking_sums, regression_sums, roc_auc_score
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome, RejectReason, Task
from otel_ml.semconv.metrics import MetricSpec

_logger = logging.getLogger(__name__)
_PRED_KEY = itemgetter(MODEL, VERSION, SEGMENT, P_STR)
_GROUP_KEY = itemgetter(MODEL, VERSION, SEGMENT, TASK)
_PREDICTION_TIME = itemgetter(P_TS)
_LABEL_CLASS = itemgetter(L_STR)
_PREDICTED_CLASS = itemgetter(P_STR)
_SCORE = itemgetter(SCORE)
_POSITIVE_CLASS = itemgetter(P_AUX)
_LABEL_TIME = itemgetter(L_TS)
_OUTCOMES = (Outcome.TP, Outcome.FP, Outcome.FN)


@dataclass(slots=True)
class StepResult:
    """Per-request answer: how many records were rejected and why (OTLP ``partial_success``)."""

    rejected: int
    error_message: str


class _BufferedSink:
    """A stage's sink: buffers writes, applied to the step only when the stage call returns normally."""

    def __init__(self, step: Step) -> None:
        self._step = step
        self._ops: list[tuple[Callable[[MetricSpec, float, Mapping[str, str]], None], MetricSpec, float,
                              Mapping[str, str]]] = []

    def add(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        self._ops.append((self._step.add, metric, value, dict(attributes)))

    def set_gauge(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        self._ops.append((self._step.set_gauge, metric, value, dict(attributes)))

    def record(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        self._ops.append((self._step.record, metric, value, dict(attributes)))

    def apply(self) -> None:
        for fn, metric, value, attrs in self._ops:
            fn(metric, value, attrs)


class Pipeline:
    """Owns the store, the aggregates and the stages; not thread-safe (one writer thread)."""

    def __init__(self, config: ProcessorConfig, store: BaseJoinStore, stages: Sequence[Stage] = (),
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.config = config
        self.store = store
        self.stages = list(stages)
        self.clock = clock or time.time
        self.capper = Capper(config.metrics.cardinality_limit)
        totals = store.load_aggregates()
        self.capper.restore(totals)
        self.aggregates = Aggregates(totals)
        self.ks = config.metrics.ranking_k
        self._auc: dict[tuple[str, str], _Window] = {}
        self._auc_dirty: set[tuple[str, str]] = set()
        self._auc_unsaved: set[tuple[str, str]] = set()
        self._last_auc_save = self.clock()
        self._restore_auc()
        self._last_expire = 0.0
        self.wants_extras = bool(self.stages)
        """Whether decoding should collect features, scores and classes (only stages use them)."""

    # --- the step --------------------------------------------------------------------------------------------------
    def process(self, items: Sequence[Decoded]) -> list[StepResult]:
        """Ingest decoded requests in ONE transaction; returns their answers after the commit.

        Raises:
            Exception: Whatever the store raised; the transaction is rolled back and nothing was published.
        """
        now = self.clock()
        step = Step(self.capper)
        results: list[StepResult] = []
        auc_updates: list[tuple[tuple[str, str], np.ndarray, np.ndarray]] = []
        try:
            ingested = self.store.ingest_many([(d.predictions, d.labels) for d in items], now)
            for d, res in zip(items, ingested, strict=True):
                results.append(self._one(d, res, step, auc_updates))
            self._commit(step)
        except BaseException:
            self.store.rollback()
            raise
        for key, scores, ys in auc_updates:
            window = self._auc.get(key)
            if window is None:
                window = self._auc[key] = _Window(self.config.metrics.auc_window)
            window.extend(scores, ys)
            self._auc_dirty.add(key)
            self._auc_unsaved.add(key)
        return results

    def tick(self) -> None:
        """Periodic work in its own transaction: expiry sweep, stage ticks, gauges."""
        now = self.clock()
        step = Step(self.capper)
        try:
            if now - self._last_expire >= self.config.store.expire_interval:
                self._last_expire = now
                self._expired(self.store.expire(now), step, evicted=False)
            for stage in self.stages:
                sink = _BufferedSink(step)
                try:
                    stage.on_tick(now, sink)
                    sink.apply()
                except Exception:
                    _logger.exception("stage %s failed in on_tick", getattr(stage, "name", stage))
            self._gauges(step, now)
            saving = now - self._last_auc_save >= AUC_SAVE_INTERVAL_S and self._save_auc()
            self._commit(step)
        except BaseException:
            self.store.rollback()
            raise
        if saving:
            self._last_auc_save = now
            self._auc_unsaved.clear()

    def close(self) -> None:
        """Save the ROC-AUC windows, close the stages and the store."""
        try:
            if self._save_auc():
                self.store.commit({})
                self._auc_unsaved.clear()
        except Exception:
            self.store.rollback()
            _logger.exception("could not save the ROC-AUC windows (they refill from new traffic)")
        for stage in self.stages:
            try:
                stage.close()
            except Exception:
                _logger.exception("stage %s failed to close", getattr(stage, "name", stage))
        self.store.close()

    # --- internals -------------------------------------------------------------------------------------------------
    def _save_auc(self) -> bool:
        """Write the changed ROC-AUC windows into the current transaction; whether there were any."""
        for key in self._auc_unsaved:
            self.store.put_state(_auc_state_key(key), self._auc[key].to_bytes())
        return bool(self._auc_unsaved)

    def _restore_auc(self) -> None:
        size = self.config.metrics.auc_window
        for name, blob in self.store.load_state().items():
            parts = name.split(SEP)
            if len(parts) != 3 or parts[0] != _AUC_STATE:
                continue
            try:
                scores, ys = _Window.arrays_from_bytes(blob)
            except ValueError:
                _logger.warning("ignoring an unreadable ROC-AUC window %r (it refills from new traffic)", name)
                continue
            window = self._auc[(parts[1], parts[2])] = _Window(size)
            window.extend(scores, ys)
            self._auc_dirty.add((parts[1], parts[2]))

    def _commit(self, step: Step) -> None:
        for key in self.aggregates.take_dirty():
            step.deltas[key] += 0.0
        totals = self.aggregates.totals_for(step.deltas)
        self.store.commit(totals)
        self.aggregates.apply(totals, step.gauges)

    def _one(self, d: Decoded, res: IngestResult, step: Step,
             auc_updates: list[tuple[tuple[str, str], np.ndarray, np.ndarray]]) -> StepResult:
        step.add_raw(m.PROCESSOR_RECORDS_RECEIVED.name, (), d.received)
        if d.ignored:
            step.add_raw(m.PROCESSOR_RECORDS_IGNORED.name, (), d.ignored)
        rejected = Counter(d.rejected)
        preds = ([d.predictions[i] for i in res.new_predictions] if len(res.new_predictions) != len(d.predictions)
                 else d.predictions)
        counts: Counter[tuple[str, str, str, str | None]] = Counter(map(_PRED_KEY, preds))
        for (model, version, segment, cls), n in counts.items():
            step.add_raw(m.PREDICTIONS.name, step.attrs(_seg_attrs(model, version, segment, cls)), n)
        self._set_sizes(preds, step)
        for model, n in Counter([d.labels[i][MODEL] for i in res.new_labels]).items():
            step.add_raw(m.LABELS.name, step.attrs({a.ML_MODEL_NAME: model}), n)
        if res.joined:
            step.add_raw(m.PROCESSOR_JOINS.name, (), len(res.joined))
            self._joined(res.joined, step, rejected, auc_updates)
        if res.evicted:
            step.add_raw(m.PROCESSOR_STORE_EVICTED.name, (), len(res.evicted))
            self._expired(res.evicted, step, evicted=True)
        for reason, n in rejected.items():
            step.add_raw(m.PROCESSOR_RECORDS_REJECTED.name, step.attrs({a.ML_REASON: reason}), n)
        if self.stages and (preds or res.joined):
            extras = [d.extras[i] for i in res.new_predictions]
            pairs_extra = {r[0]: e for r, e in zip(preds, extras, strict=True)}
            self._run_stages("on_predictions", _batches(preds, extras), step)
            if res.joined:
                joined_extras = [pairs_extra.get(r[0]) for r in res.joined]
                self._run_stages("on_joined", _batches(res.joined, joined_extras), step)
        error = d.first_error
        n_rejected = sum(rejected.values())
        if n_rejected and not error:
            error = "task_mismatch: a label's type does not fit its prediction's task"
        return StepResult(n_rejected, error)

    def _run_stages(self, hook: str, batches: list[PredictionBatch], step: Step) -> None:
        for stage in self.stages:
            for batch in batches:
                sink = _BufferedSink(step)
                try:
                    getattr(stage, hook)(batch, sink)
                    sink.apply()
                except Exception:
                    _logger.exception("stage %s failed in %s (model %s): its metrics of this batch are dropped",
                                      getattr(stage, "name", stage), hook, batch.model)

    def _joined(self, rows: list[Row], step: Step, rejected: Counter[str],
                auc_updates: list[tuple[tuple[str, str], np.ndarray, np.ndarray]]) -> None:
        groups: dict[tuple[str, str, str, str], list[Row]] = defaultdict(list)
        for key, r in zip(map(_GROUP_KEY, rows), rows, strict=True):
            groups[key].append(r)
        delays: dict[tuple[str, str], list[Row]] = defaultdict(list)
        for (model, version, _, _), grp in groups.items():
            delays[(model, version)].extend(grp)
        for (model, version), grp in delays.items():
            n = len(grp)
            arr = np.maximum(np.fromiter(map(_LABEL_TIME, grp), np.float64, n)
                             - np.fromiter(map(_PREDICTION_TIME, grp), np.float64, n), 0.0)
            step.record_many(m.LABEL_DELAY, arr, step.attrs({a.ML_MODEL_NAME: model, a.ML_MODEL_VERSION: version}))
        for (model, version, segment, task), grp in groups.items():
            base = _seg_attrs(model, version, segment, None)
            if task in Task.CLASSIFICATION:
                ok = grp if None not in map(_LABEL_CLASS, grp) else [r for r in grp if r[L_STR] is not None]
                self._classification(ok, base, step, auc_updates if task == Task.BINARY else None)
            elif task == Task.REGRESSION:
                ok = [r for r in grp if r[L_NUM] is not None and math.isfinite(r[L_NUM])]
                self._regression(ok, base, step)
            elif task == Task.MULTILABEL:
                ok = [r for r in grp if r[L_LIST] is not None]
                self._multilabel(ok, base, step)
            else:
                ok = [r for r in grp if r[L_LIST] is not None]
                self._ranking(ok, base, step)
            if len(ok) != len(grp):
                rejected[RejectReason.TASK_MISMATCH] += len(grp) - len(ok)

    def _classification(self, rows: list[Row], base: dict[str, str], step: Step,
                        auc_updates: list[tuple[tuple[str, str], np.ndarray, np.ndarray]] | None) -> None:
        if not rows:
            return
        y_true = list(map(_LABEL_CLASS, rows))
        sums = classification_sums(y_true, list(map(_PREDICTED_CLASS, rows)))
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, sums.labeled)
        step.add_raw(m.CORRECT_PREDICTIONS.name, attrs, sums.correct)
        self._outcomes(sums.outcomes, base, step)
        if auc_updates is not None:
            scores = list(map(_SCORE, rows))
            if None in scores:
                rows = [r for r in rows if r[SCORE] is not None]
                scores, y_true = list(map(_SCORE, rows)), list(map(_LABEL_CLASS, rows))
            if rows:
                key = (base[a.ML_MODEL_NAME], base[a.ML_MODEL_VERSION])
                auc_updates.append((key, np.asarray(scores, dtype=np.float64),
                                    np.asarray(list(map(eq, y_true, map(_POSITIVE_CLASS, rows))), dtype=bool)))

    def _outcomes(self, outcomes: Mapping[str, list[int]], base: dict[str, str], step: Step) -> None:
        name = m.CLASSIFICATION_OUTCOMES.name
        for cls, counts in outcomes.items():
            for outcome, n in zip(_OUTCOMES, counts, strict=True):
                if n:
                    step.add_raw(name, step.attrs({**base, a.ML_CLASS: cls, a.ML_OUTCOME: outcome}), n)

    def _regression(self, rows: list[Row], base: dict[str, str], step: Step) -> None:
        if not rows:
            return
        s = regression_sums([r[L_NUM] for r in rows], [r[P_NUM] for r in rows])
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, s.labeled)
        step.add_raw(m.REGRESSION_ABSOLUTE_ERROR.name, attrs, s.absolute_error)
        step.add_raw(m.REGRESSION_SQUARED_ERROR.name, attrs, s.squared_error)
        step.add_raw(m.REGRESSION_SIGNED_ERROR.name, attrs, s.signed_error)

    def _multilabel(self, rows: list[Row], base: dict[str, str], step: Step) -> None:
        if not rows:
            return
        s = multilabel_sums([json.loads(r[L_LIST]) for r in rows], [json.loads(r[P_LIST]) for r in rows])
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, s.labeled)
        step.add_raw(m.CORRECT_PREDICTIONS.name, attrs, s.exact)
        self._outcomes(s.outcomes, base, step)

    @staticmethod
    def _set_sizes(preds: Sequence[Row], step: Step) -> None:
        """``ml.multilabel.predicted_labels`` of newly accepted multilabel predictions, at prediction time.

        Recorded when the prediction is first accepted (duplicates and re-sent requests excluded by the store), so
        the average covers all traffic, labeled or not, and does not wait for the label delay.
        """
        sizes: dict[tuple[str, str, str], list[int]] = defaultdict(list)
        for r in preds:
            if r[TASK] == Task.MULTILABEL:
                sizes[(r[MODEL], r[VERSION], r[SEGMENT])].append(len(json.loads(r[P_LIST])))
        for (model, version, segment), ns in sizes.items():
            step.record_many(m.MULTILABEL_PREDICTED_LABELS, np.asarray(ns, dtype=np.float64),
                             step.attrs(_seg_attrs(model, version, segment, None)))

    def _ranking(self, rows: list[Row], base: dict[str, str], step: Step) -> None:
        if not rows:
            return
        rel = [json.loads(r[L_REL]) if r[L_REL] else None for r in rows]
        s = ranking_sums([json.loads(r[P_LIST]) for r in rows], [json.loads(r[L_LIST]) for r in rows], self.ks, rel)
        attrs = step.attrs(base)
        step.add_raw(m.LABELED_PREDICTIONS.name, attrs, s.labeled)
        step.add_raw(m.RANKING_RECIPROCAL_RANK.name, attrs, s.reciprocal_rank)
        for k in self.ks:
            kattrs = step.attrs({**base, a.ML_RANKING_K: str(k)})
            step.add_raw(m.RANKING_PRECISION_AT_K.name, kattrs, s.precision[k])
            step.add_raw(m.RANKING_NDCG_AT_K.name, kattrs, s.ndcg[k])

    def _expired(self, rows: list[Row], step: Step, evicted: bool) -> None:
        preds: Counter[tuple[str, str, str]] = Counter()
        labels: Counter[str] = Counter()
        for r in rows:
            if is_prediction(r):
                preds[(r[MODEL], r[VERSION], r[SEGMENT])] += 1
            else:
                labels[r[MODEL]] += 1
        for (model, version, segment), n in preds.items():
            step.add_raw(m.EXPIRED_PREDICTIONS.name, step.attrs(_seg_attrs(model, version, segment, None)), n)
        for model, n in labels.items():
            step.add_raw(m.ORPHANED_LABELS.name, step.attrs({a.ML_MODEL_NAME: model}), n)

    def _gauges(self, step: Step, now: float) -> None:
        step.set_gauge(m.PROCESSOR_STORE_PENDING, float(self.store.pending()), {})
        oldest = self.store.oldest_pending_arrival()
        step.set_gauge(m.PROCESSOR_STORE_OLDEST_PENDING_AGE, max(now - oldest, 0.0) if oldest else 0.0, {})
        for key in self._auc_dirty:
            scores, ys = self._auc[key].values()
            step.set_gauge(m.CLASSIFICATION_ROC_AUC, roc_auc_score(ys, scores),
                           {a.ML_MODEL_NAME: key[0], a.ML_MODEL_VERSION: key[1]})
        self._auc_dirty.clear()


class _Window:
    """Ring buffer of the most recent (score, is_positive) pairs of one model version (ROC-AUC window)."""

    def __init__(self, size: int) -> None:
        self.scores = np.empty(size, dtype=np.float64)
        self.ys = np.empty(size, dtype=bool)
        self.pos = 0
        self.filled = 0

    def extend(self, scores: np.ndarray, ys: np.ndarray) -> None:
        size = self.scores.size
        if scores.size >= size:
            scores, ys = scores[-size:], ys[-size:]
        idx = (self.pos + np.arange(scores.size)) % size
        self.scores[idx] = scores
        self.ys[idx] = ys
        self.pos = int((self.pos + scores.size) % size)
        self.filled = min(self.filled + scores.size, size)

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        return self.scores[:self.filled], self.ys[:self.filled]

    def to_bytes(self) -> bytes:
        """Oldest first: magic, little-endian float64 scores, then one byte per label (stable across versions)."""
        order = np.arange(self.filled) if self.filled < self.scores.size else (self.pos + np.arange(self.filled)) \
            % self.scores.size
        return _AUC_MAGIC + self.scores[order].astype("<f8").tobytes() + self.ys[order].astype(np.uint8).tobytes()

    @staticmethod
    def arrays_from_bytes(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_bytes`; raises ValueError on anything else."""
        body = blob[len(_AUC_MAGIC):]
        if not blob.startswith(_AUC_MAGIC) or len(body) % 9:
            raise ValueError("not a ROC-AUC window")
        n = len(body) // 9
        return (np.frombuffer(body[:8 * n], dtype="<f8").astype(np.float64),
                np.frombuffer(body[8 * n:], dtype=np.uint8).astype(bool))


_AUC_STATE: Final = "auc"
_AUC_MAGIC: Final = b"AUC1"
AUC_SAVE_INTERVAL_S: Final = 10.0
"""How often changed ROC-AUC windows are written to the store (and at shutdown): after ``kill -9`` the restored
window misses at most the last interval's joins."""


def _auc_state_key(key: tuple[str, str]) -> str:
    return SEP.join((_AUC_STATE, *key))


def _seg_attrs(model: str, version: str, segment: str, cls: str | None) -> dict[str, str]:
    d = {a.ML_MODEL_NAME: model, a.ML_MODEL_VERSION: version}
    if segment:
        d[a.ML_SEGMENT] = segment
    if cls is not None:
        d[a.ML_CLASS] = cls
    return d


def _batches(rows: Sequence[Row], extras: Sequence[Extra | None]) -> list[PredictionBatch]:
    """Group rows into columnar :class:`PredictionBatch` objects by (model, version, task, classes)."""
    groups: dict[tuple[str, str, str, tuple[str, ...] | None], list[int]] = defaultdict(list)
    for i, (r, e) in enumerate(zip(rows, extras, strict=True)):
        groups[(r[MODEL], r[VERSION], r[TASK], e[2] if e else None)].append(i)
    out: list[PredictionBatch] = []
    for (model, version, task, classes), idx in groups.items():
        rs = [rows[i] for i in idx]
        es = [extras[i] for i in idx]
        joined = rs[0][L_TS] is not None
        values: Any
        if task == Task.REGRESSION:
            values = np.asarray([r[P_NUM] for r in rs], dtype=np.float64)
        elif task in Task.CLASSIFICATION:
            values = [r[P_STR] for r in rs]
        else:
            values = None
        scores = np.asarray([np.nan if r[SCORE] is None else r[SCORE] for r in rs], dtype=np.float64)
        matrix = None
        if classes is not None and any(e is not None and e[1] is not None for e in es):
            matrix = np.full((len(rs), len(classes)), np.nan)
            for j, e in enumerate(es):
                if e is not None and e[1] is not None:
                    matrix[j] = e[1]
        features: dict[str, list[Any]] = {}
        for j, e in enumerate(es):
            if e is None:
                continue
            for name, v in e[0].items():
                col = features.get(name)
                if col is None:
                    col = features[name] = [None] * len(rs)
                col[j] = v
        batch = PredictionBatch(
            model=model, version=version, task=task, classes=classes, ids=[prediction_id(r) for r in rs],
            timestamps=np.asarray([r[P_TS] for r in rs], dtype=np.float64), values=values, scores=scores,
            score_matrix=matrix,
            value_lists=[json.loads(r[P_LIST]) for r in rs] if task in (Task.MULTILABEL, Task.RANKING) else None,
            features=features, segments=[r[SEGMENT] for r in rs])
        if joined:
            if task == Task.REGRESSION:
                batch.labels = np.asarray([np.nan if r[L_NUM] is None else r[L_NUM] for r in rs], dtype=np.float64)
            elif task in Task.CLASSIFICATION:
                batch.labels = [r[L_STR] if r[L_STR] is not None else "" for r in rs]
            else:
                batch.label_lists = [json.loads(r[L_LIST]) if r[L_LIST] else [] for r in rs]
                if task == Task.RANKING:
                    batch.relevance = [json.loads(r[L_REL]) if r[L_REL] else [1.0] * len(ll)
                                       for r, ll in zip(rs, batch.label_lists, strict=True)]
            batch.label_timestamps = np.asarray([r[L_TS] for r in rs], dtype=np.float64)
        out.append(batch)
    return out


__all__ = ["Attrs", "MetricSink", "Pipeline", "StepResult"]
