"""The processor step: decoded requests -> store ingest and joins -> metric deltas -> stages -> one commit.

:class:`Processor` is synchronous and single-threaded (the :mod:`~otel_ml.processor.writer` thread owns it), so it
can be tested without a network. A step either commits everything (records, joins, aggregate totals) or nothing;
only after the commit does it publish the totals to the :class:`~otel_ml.processor.aggregates.Aggregates` mirror
and update the in-memory ROC-AUC windows (:mod:`~otel_ml.processor.auc_window`, saved to the store by
:meth:`Processor.tick` every :data:`~otel_ml.processor.auc_window.AUC_SAVE_INTERVAL_S` and by
:meth:`Processor.close`, restored at construction).

The jobs of a step live apart: realized-quality sums per task in :mod:`~otel_ml.processor.realized`, the ROC-AUC
windows in :mod:`~otel_ml.processor.auc_window`, stage calls in :mod:`~otel_ml.processor.stage_runner` (rows to
batches in :mod:`~otel_ml.processor.stage_batches`). This module counts volumes (predictions, labels, joins,
expiry, rejections) and owns the transaction.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter

from otel_ml.processor.aggregates import STATE_KEY, Aggregates, Capper, Key, Step
from otel_ml.processor.auc_window import AucUpdate, AucWindows
from otel_ml.processor.config import ProcessorConfig
from otel_ml.processor.decode import Decoded, error_message
from otel_ml.processor.realized import RealizedQuality, segment_attrs
from otel_ml.processor.records import MODEL, P_STR, SEGMENT, VERSION, Row, is_prediction
from otel_ml.processor.stage import Stage
from otel_ml.processor.stage_runner import StageRunner, run_after_commit
from otel_ml.processor.store.base import BaseJoinStore, IngestResult, Quarantined
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m

_logger = logging.getLogger(__name__)
_PRED_KEY = itemgetter(MODEL, VERSION, SEGMENT, P_STR)


@dataclass(slots=True)
class StepResult:
    """Per-request answer: how many records were rejected and why (OTLP ``partial_success``)."""

    rejected: int
    error_message: str


class Processor:
    """Owns the store, the aggregates, the ROC-AUC windows and the stages; not thread-safe (one writer thread)."""

    def __init__(self, config: ProcessorConfig, store: BaseJoinStore, stages: Sequence[Stage] = (),
                 clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.store = store
        self.stage_runner = StageRunner(stages)
        self.clock = clock or time.time
        mc = config.metrics
        self.capper = Capper(mc.cardinality_limit, mc.cardinality_idle, mc.cardinality_admission, mc.series_limit,
                             self.clock)
        totals = store.load_aggregates()
        state = store.load_state()
        self.capper.restore(totals, state.get(STATE_KEY))
        self.aggregates = Aggregates(totals)
        self.realized = RealizedQuality(config.metrics.ranking_k)
        self.auc = AucWindows(config.metrics.auc_window, self.clock())
        self.auc.restore(state)
        self._delete_unsupported = False
        self._last_expire = 0.0
        self.wants_extras = bool(self.stage_runner.stages)
        """Whether decoding should collect features, scores and classes (only stages use them)."""
        self.reads_ahead = callable(getattr(store, "prefetch", None))
        """Whether the store starts the next step's reads early (:meth:`process`'s ``lookahead``; PostgreSQL)."""

    def process(self, items: Sequence[Decoded],
                lookahead: Callable[[], Sequence[Decoded]] | None = None) -> list[StepResult]:
        """Ingest decoded requests in ONE transaction; returns their answers after the commit.

        ``lookahead`` (the writer's, when :attr:`reads_ahead`): called once this step's joins are decided, it takes
        the requests of the next step off the queue; the store starts that step's reads (``prefetch``, PostgreSQL: on
        its second connection) while this step computes its metrics and commits.

        Raises:
            Exception: Whatever the store raised; the transaction is rolled back and nothing was published.
        """
        now = self.clock()
        step = Step(self.capper, self.aggregates)
        results: list[StepResult] = []
        auc_updates: list[AucUpdate] = []
        try:
            self._resync_if_needed()
            whole = [d for d in items if d.parts is None]
            outcome: dict[int, tuple[Counter[str], str]] = {}
            ingested = self.store.ingest_many([(d.predictions, d.labels) for d in whole], now)
            if lookahead is not None and len(whole) == len(items):
                self._read_ahead(lookahead)
            for d, res in zip(whole, ingested, strict=True):
                outcome[id(d)] = self._one(d, res, step, auc_updates)
            for d in items:  # large requests: one part at a time (bounded memory), in the same transaction
                if d.parts is not None:
                    outcome[id(d)] = self._in_parts(d, d.parts, step, auc_updates, now)
            for d in items:
                rejected, first = outcome[id(d)]
                first = first or "task_mismatch: a label's type does not fit its prediction's task"
                results.append(StepResult(sum(rejected.values()), error_message(rejected, first)))
            self._commit(step)
        except BaseException as exc:
            self._failed(exc)
            raise
        finally:
            self._count_store_errors()
        self.auc.extend(auc_updates)
        run_after_commit(step)
        return results

    def tick(self) -> None:
        """Periodic work in its own transaction: expiry sweep, stage ticks, gauges, saving the ROC-AUC windows."""
        now = self.clock()
        step = Step(self.capper, self.aggregates)
        try:
            self._resync_if_needed()
            if now - self._last_expire >= self.config.store.expire_interval:
                self._last_expire = now
                self._expired(self.store.expire(now), step)
            self.stage_runner.tick(now, step)
            self._gauges(step, now)
            saving = self.auc.save_due(now, self.store.put_state)
            cardinality = self.capper.save_due(now)
            if cardinality is not None:
                self.store.put_state(STATE_KEY, cardinality)
            self._commit(step)
        except BaseException as exc:
            self._failed(exc)
            raise
        finally:
            self._count_store_errors()
        if saving:
            self.auc.saved(now)
        run_after_commit(step)

    def close(self) -> None:
        """Save the ROC-AUC windows, close the stages and the store."""
        try:
            self.store.put_state(STATE_KEY, self.capper.state())
            self.auc.save(self.store.put_state)
            self._commit(Step(self.capper, self.aggregates))
            self.auc.saved()
        except Exception as exc:
            self._failed(exc)
            _logger.exception("could not save the ROC-AUC windows (they refill from new traffic)")
        self.stage_runner.close()
        self.store.close()
        self._count_store_errors()

    def _commit(self, step: Step) -> None:
        """Commit the step (records, joins, quarantined rows, totals); publish the totals only once committed."""
        quarantined = self.store.take_quarantined()
        if quarantined:
            step.add_raw(m.PROCESSOR_STORE_QUARANTINED.name, (), len(quarantined))
        retired = self.capper.take_retired()
        gone: list[Key] = []
        if retired:  # series of values that lost their cardinality slot (unless re-admitted in this very step)
            gone = [k for k in self.aggregates.retire_keys(retired) if k not in step.deltas]
        totals, bumps = self.aggregates.prepare(step.deltas)
        try:
            if gone and not self._delete_unsupported:
                try:
                    self.store.delete_aggregates(gone)
                except NotImplementedError:
                    self._delete_unsupported = True
                    _logger.warning("the %s store cannot delete retired series: they are dropped from memory only",
                                    type(self.store).__name__)
            self.store.commit(totals)
        except BaseException:
            self.aggregates.restore(bumps)
            self.capper.requeue_retired(retired)
            raise
        if retired:
            self.aggregates.remove(gone, retired)
            self.auc.retire(retired)
        self.aggregates.apply(totals, step.gauges)
        for q in quarantined:
            _log_quarantined(q)

    def _read_ahead(self, lookahead: Callable[[], Sequence[Decoded]]) -> None:
        """Hand the next step's requests to a store that reads ahead (none decoded in parts: those ingest part by
        part, keys unknown in advance)."""
        prefetch = getattr(self.store, "prefetch", None)
        if prefetch is None:
            return
        following = lookahead()
        if following and all(d.parts is None for d in following):
            prefetch([(d.predictions, d.labels) for d in following])

    def _failed(self, exc: BaseException) -> None:
        """After a failed step: roll back (a store's rollback never raises and tolerates one already done)."""
        self.store.rollback()

    def _resync_if_needed(self) -> None:
        """After a commit whose outcome is unknown (``store.needs_resync()``), reload the committed totals.

        The mirror must equal what the store holds before the next step computes totals from it: if that commit did
        happen, its records are duplicates when re-sent and only the reloaded totals carry their counts. Counters
        bumped outside steps and not persisted yet are kept on top (:meth:`Aggregates.resync`).
        """
        if self.store.needs_resync():
            totals = self.store.load_aggregates()
            self.capper.restore(totals)
            self.aggregates.resync(totals)
            _logger.warning("reloaded the committed totals after a commit with an unknown outcome")

    def _count_store_errors(self) -> None:
        """Count the store's failures by kind (persisted with the next commit: the failed one had nothing)."""
        for kind, n in self.store.take_errors().items():
            self.aggregates.add_uncommitted(m.PROCESSOR_STORE_ERRORS.name, ((a.ML_REASON, kind),), float(n))

    def _in_parts(self, d: Decoded, parts: Callable[[], Iterator[Decoded]], step: Step, auc_updates: list[AucUpdate],
                  now: float) -> tuple[Counter[str], str]:
        """Ingest and count a request decoded in parts; its rejections and first error."""
        step.add_raw(m.PROCESSOR_RECORDS_RECEIVED.name, (), d.received)
        if d.ignored:
            step.add_raw(m.PROCESSOR_RECORDS_IGNORED.name, (), d.ignored)
        rejected: Counter[str] = Counter()
        first = ""
        for part in parts():
            part.received = part.ignored = 0  # counted above, for the whole request
            [res] = self.store.ingest_many([(part.predictions, part.labels)], now)
            part_rejected, part_first = self._one(part, res, step, auc_updates)
            rejected.update(part_rejected)
            first = first or part_first
        return rejected, first

    def _one(self, d: Decoded, res: IngestResult, step: Step,
             auc_updates: list[AucUpdate]) -> tuple[Counter[str], str]:
        """Count one decoded request (or part); its rejections by reason and first error."""
        if d.received:
            step.add_raw(m.PROCESSOR_RECORDS_RECEIVED.name, (), d.received)
        if d.ignored:
            step.add_raw(m.PROCESSOR_RECORDS_IGNORED.name, (), d.ignored)
        rejected = Counter(d.rejected)
        preds = ([d.predictions[i] for i in res.new_predictions] if len(res.new_predictions) != len(d.predictions)
                 else d.predictions)
        counts: Counter[tuple[str, str, str, str | None]] = Counter(map(_PRED_KEY, preds))
        for (model, version, segment, cls), n in counts.items():
            step.add_raw(m.PREDICTIONS.name, step.attrs(segment_attrs(model, version, segment, cls)), n)
        self.realized.set_sizes(preds, step)
        for model, n in Counter([d.labels[i][MODEL] for i in res.new_labels]).items():
            step.add_raw(m.LABELS.name, step.attrs({a.ML_MODEL_NAME: model}), n)
        if res.joined:
            step.add_raw(m.PROCESSOR_JOINS.name, (), len(res.joined))
            self.realized.joined(res.joined, step, rejected, auc_updates)
        if res.evicted:
            step.add_raw(m.PROCESSOR_STORE_EVICTED.name, (), len(res.evicted))
            self._expired(res.evicted, step)
        if res.late:  # new, but their counterpart already left unjoined: expired / orphaned at once
            self._expired(res.late, step)
        for reason, n in rejected.items():
            step.add_raw(m.PROCESSOR_RECORDS_REJECTED.name, step.attrs({a.ML_REASON: reason}), n)
        for reason, n in d.dropped.items():
            step.add_raw(m.PROCESSOR_FEATURES_DROPPED.name, step.attrs({a.ML_REASON: reason}), n)
        if self.stage_runner.stages and (preds or res.joined):
            self.stage_runner.step(preds, [d.extras[i] for i in res.new_predictions], res.joined, step)
        return rejected, d.first_error

    @staticmethod
    def _expired(rows: list[Row], step: Step) -> None:
        """Expired (or evicted) pending rows: predictions that never met a label, labels that never met a prediction."""
        preds: Counter[tuple[str, str, str]] = Counter()
        labels: Counter[str] = Counter()
        for r in rows:
            if is_prediction(r):
                preds[(r[MODEL], r[VERSION], r[SEGMENT])] += 1
            else:
                labels[r[MODEL]] += 1
        for (model, version, segment), n in preds.items():
            step.add_raw(m.EXPIRED_PREDICTIONS.name, step.attrs(segment_attrs(model, version, segment, None)), n)
        for model, n in labels.items():
            step.add_raw(m.ORPHANED_LABELS.name, step.attrs({a.ML_MODEL_NAME: model}), n)

    def _gauges(self, step: Step, now: float) -> None:
        step.set_gauge(m.PROCESSOR_STORE_PENDING, float(self.store.pending()), {})
        oldest = self.store.oldest_pending_arrival()
        step.set_gauge(m.PROCESSOR_STORE_OLDEST_PENDING_AGE, max(now - oldest, 0.0) if oldest else 0.0, {})
        self.auc.set_gauges(step)


def _log_quarantined(q: Quarantined) -> None:
    """Once per quarantined row (after the commit that moved it aside): its key and why."""
    _logger.error("join store: a stored record could not be decoded and was moved to the quarantine (it will never "
                  "join; counted in %s): key %r: %s", m.PROCESSOR_STORE_QUARANTINED.name, q.key, q.reason)
