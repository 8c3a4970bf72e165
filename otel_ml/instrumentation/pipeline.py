"""The bounded queue between inference code and the background worker that builds and exports events.

Caller side (:meth:`Pipeline.submit`): appends one tuple of raw references to a :class:`collections.deque` after
checking its length; nothing else. **Overflow policy: drop newest.** When the queue holds ``queue_size`` records,
the new record is dropped and counted in ``ml.client.events.dropped{ml.reason="queue_full"}`` (one per event the
record would have produced), so inference never waits and memory stays bounded; the records already queued are
the ones exported. (The SDK's batch processor instead evicts the oldest record, without exporting a count.)

Worker side: a daemon thread wakes every ``schedule_delay`` (or when ``batch_size`` records are queued), turns
records into events (:mod:`~otel_ml.instrumentation.normalize`), hands them to the sink in batches of at most
``batch_size`` events, and exports the client metrics every ``metric_interval``. While an export is retried
(backoff, endpoint down or slow) new records keep queueing up to the bound and are then dropped and counted.

Fork safety: in a forked child the queue, the worker, the metrics and the transport are replaced by fresh ones
(records queued by the parent stay the parent's); prediction ids get a new prefix and the resource a new
``service.instance.id`` when otel-ml generated it. Shutdown (:func:`otel_ml.shutdown`, also run ``atexit``)
exports what is queued within a timeout and counts the rest as ``shutdown`` drops.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import islice, repeat
from typing import Any

from otel_ml.instrumentation.config import Settings, with_instance_id
from otel_ml.instrumentation.fastbatch import BatchEncoder
from otel_ml.instrumentation.limits import MAX_STRING_LENGTH, TruncationReason
from otel_ml.instrumentation.normalize import MISSING, Normalizer
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.semconv.attributes import ML_PREDICTION_SCORE, ML_PREDICTION_VALUE, DropReason, Task

CLASSIFICATION = Task.CLASSIFICATION

_logger = logging.getLogger(__name__)

K_PRED = 0
"""``(K_PRED, spec, time_ns, id, prediction, scores, features, segments, label, span, duration_ns)``"""
K_BATCH = 1
"""``(K_BATCH, spec, time_ns, ids, predictions, scores, features, segments, labels, span, duration_ns)``"""
K_CALL = 2
"""``(K_CALL, call, time_ns, id or ids, args, kwargs, result, span, duration_ns)`` from ``monitor.instrument``"""
K_ERROR = 3
"""``(K_ERROR, spec, duration_ns, error_type)``"""
K_LABEL = 4
"""``(K_LABEL, spec, time_ns, id, label, relevance)``"""
K_LABELS = 5
"""``(K_LABELS, spec, time_ns, ids, labels)``"""


def _events_of(rec: tuple[Any, ...]) -> int:
    kind = rec[0]
    if kind in (K_BATCH, K_LABELS) or (kind == K_CALL and not isinstance(rec[3], str)):
        return len(rec[3])
    return 0 if kind == K_ERROR else 1


def _spec_of(rec: tuple[Any, ...]) -> ModelSpec:
    return rec[1].spec if rec[0] == K_CALL else rec[1]


class Pipeline:
    """The no-op pipeline: used when nothing is configured (or ``OTEL_SDK_DISABLED=true``).

    Hot paths inline :meth:`WorkerPipeline.submit` (``queue``, ``max_len``, ``wake_at``, ``wake``, ``drop_full``)
    after checking ``active``.
    """

    active = False
    queue: deque[tuple[Any, ...]]
    max_len: int
    wake_at: int
    wake: threading.Event

    def drop_full(self, rec: tuple[Any, ...]) -> None:
        """Count a record dropped because the queue is full."""

    def submit(self, rec: tuple[Any, ...]) -> None:
        """Drop silently."""

    def force_flush(self, timeout: float | None = None) -> bool:
        """Nothing to flush."""
        return True

    def shutdown(self, timeout: float | None = None) -> bool:
        """Nothing to stop."""
        return True

    def queue_len(self) -> int:
        """Records waiting."""
        return 0


class WorkerPipeline(Pipeline):
    """Bounded queue plus one daemon worker thread feeding a sink (see the module docstring)."""

    active = True

    def __init__(self, settings: Settings, sink_factory: Callable[[WorkerPipeline], Any]) -> None:
        self.settings = settings
        self._sink_factory = sink_factory
        self._start()

    def _start(self) -> None:
        s = self.settings
        self.queue: deque[tuple[Any, ...]] = deque()
        self.max_len = s.queue_size
        self.wake_at = min(s.batch_size, s.queue_size)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Condition()
        self._flush_requested = 0
        self._flush_done = 0
        self._stopped = False
        self._deadline: float | None = None
        self.normalizer = Normalizer()
        self.sink = self._sink_factory(self)
        self.metrics = self.sink.metrics
        self._feature_encoder: Any = getattr(self.sink, "feature_encoder", None)
        self._batch_encoder = BatchEncoder(self.sink, self.normalizer) if self._feature_encoder is not None else None
        self._pending: Iterator[Any] | None = None
        self._pending_left = 0
        self._pending_name = ""
        self.cpu_ns = 0
        self._thread = threading.Thread(target=self._run, name="otel-ml-worker", daemon=True)
        self._thread.start()

    # --- caller side -------------------------------------------------------------------------------------------------
    def submit(self, rec: tuple[Any, ...]) -> None:
        """Queue a record, or drop it (newest) and count when the queue is full. Never blocks."""
        q = self.queue
        n = len(q)
        if n < self.max_len:
            q.append(rec)
            if n == self.wake_at:
                self.wake.set()
        else:
            self.drop_full(rec)

    def drop_full(self, rec: tuple[Any, ...]) -> None:
        """Count a record dropped because the queue is full (drop-newest policy)."""
        try:
            if rec[0] == K_PRED:
                self.metrics.record_drop(rec[1].name, DropReason.QUEUE_FULL)
                return
            count = _events_of(rec)
            if count:
                self.metrics.record_drop(_spec_of(rec).name, DropReason.QUEUE_FULL, count)
        except Exception:  # counting must never raise into the caller
            _logger.debug("otel-ml: failed to count a dropped record", exc_info=True)

    def queue_len(self) -> int:
        """Records waiting in the queue."""
        return len(self.queue)

    # --- lifecycle ---------------------------------------------------------------------------------------------------
    def force_flush(self, timeout: float | None = None) -> bool:
        """Export everything queued so far, and the metrics; wait at most ``timeout`` seconds."""
        if self._stopped:
            return True
        timeout = self.settings.shutdown_timeout_s if timeout is None else timeout
        with self._flush_lock:
            self._flush_requested += 1
            target = self._flush_requested
            self.wake.set()
            return self._flush_lock.wait_for(lambda: self._flush_done >= target or not self._thread.is_alive(),
                                             timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        """Export what is queued within ``timeout`` seconds, then stop the worker. Idempotent."""
        if self._stopped:
            return True
        self._stopped = True
        timeout = self.settings.shutdown_timeout_s if timeout is None else timeout
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout + 0.5)
        done = not self._thread.is_alive()
        try:
            self.sink.close()
        except Exception:
            _logger.debug("otel-ml: closing the sink failed", exc_info=True)
        return done

    def after_fork_in_child(self) -> None:
        """Fresh queue, worker, metrics and transport in a forked child."""
        if self._stopped:
            return
        if self.settings.generated_instance_id:
            res = dict(self.settings.resource)
            res.pop("service.instance.id", None)
            self.settings.resource = with_instance_id(res)
        self._start()

    # --- worker ------------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        s = self.settings
        next_metrics = time.monotonic() + s.metric_interval_s
        cpu0 = time.thread_time_ns()
        while True:
            if len(self.queue) < self.wake_at:  # a full batch waiting: no pause
                self.wake.wait(max(0.0, min(s.schedule_delay_s, next_metrics - time.monotonic())))
            self.wake.clear()
            stopping = self._stop.is_set()
            flush_target = self._flush_requested
            try:
                self._drain(stopping)
                if stopping or flush_target > self._flush_done or time.monotonic() >= next_metrics:
                    next_metrics = time.monotonic() + s.metric_interval_s
                    self._merge_truncated()
                    self.sink.export_metrics(len(self.queue), self._stop, self._deadline)
            except Exception:  # the worker must survive anything a record or exporter throws
                _logger.warning("otel-ml: worker error", exc_info=True)
            self.cpu_ns = time.thread_time_ns() - cpu0
            if flush_target > self._flush_done:
                with self._flush_lock:
                    self._flush_done = flush_target
                    self._flush_lock.notify_all()
            if stopping:
                break

    def _merge_truncated(self) -> None:
        if self.normalizer.truncated:
            self.metrics.add_truncated(self.normalizer.truncated)

    def _drain(self, stopping: bool) -> None:
        """Export the records queued now (all of them when stopping, until the deadline).

        Records that arrive meanwhile wait for the next round, so that a producer faster than the worker cannot
        keep it from exporting metrics or completing a flush.
        """
        batch_size = self.settings.batch_size
        q = self.queue
        out: list[Any] = []
        budget = len(q) + (1 if self._pending is not None else 0)
        while True:
            if stopping and self._deadline is not None and time.monotonic() > self._deadline:
                self._drop_remaining(out)
                return
            it = self._pending
            if it is None:
                if not q or (budget <= 0 and not stopping):
                    break
                budget -= 1
                rec = q.popleft()
                kind = rec[0]
                if self._batch_encoder is not None and (kind == K_PRED or (kind == K_CALL and type(rec[3]) is str)):
                    room = batch_size - len(out)
                    run = self._singles_run(rec, q, room if stopping else min(room, budget + 1))
                    budget -= len(run) - 1
                    out.extend(self._singles(run))
                    if len(out) >= batch_size:
                        self.sink.send(out, self._stop, self._deadline)
                        out = []
                    continue
                if kind == K_PRED or (kind == K_CALL and type(rec[3]) is str):  # one event: no iterator machinery
                    try:
                        item = self._prediction(*rec[1:]) if kind == K_PRED else self._call_single(*rec[1:])
                    except Exception:
                        self._invalid(rec)
                        continue
                    if item is not None:
                        out.append(item)
                        if len(out) >= batch_size:
                            self.sink.send(out, self._stop, self._deadline)
                            out = []
                    continue
                it = self._pending = self._expand(rec)
                self._pending_left = _events_of(rec)
                self._pending_name = _spec_of(rec).name
            want = batch_size - len(out)
            before = len(out)
            out.extend(islice(it, want))
            self._pending_left -= len(out) - before
            if len(out) - before < want:
                self._pending = None
            if len(out) >= batch_size:
                self.sink.send(out, self._stop, self._deadline)
                out = []
        if out:
            self.sink.send(out, self._stop, self._deadline)

    @staticmethod
    def _singles_run(rec: tuple[Any, ...], q: deque[tuple[Any, ...]], most: int) -> list[tuple[Any, ...]]:
        """``rec`` (a single prediction) and the single predictions of the same model queued right after it (at
        most ``most`` records in all), taken off the queue."""
        spec = _spec_of(rec)
        run = [rec]
        while len(run) < most and q:
            nxt = q[0]
            kind = nxt[0]
            if not ((kind == K_PRED and nxt[1] is spec) or (kind == K_CALL and type(nxt[3]) is str
                                                              and nxt[1].spec is spec)):
                break
            run.append(q.popleft())
        return run

    def _singles(self, run: list[tuple[Any, ...]]) -> list[Any]:
        """Events of single predictions of one model: encoded together (column-wise) when they all have the common
        shape, else one by one; the same bytes and counts either way."""
        preds: list[tuple[Any, ...]] = []
        for rec in run:
            if rec[0] == K_PRED:
                preds.append(rec)
                continue
            call, time_ns, pid, args, kwargs, result, span, duration_ns = rec[1:]
            try:
                prediction, scores, features, segments = call.extract(args, kwargs, result)
            except Exception:
                self._invalid(rec)
                continue
            preds.append((K_PRED, call.spec, time_ns, pid, prediction, scores, features, segments, MISSING, span,
                          duration_ns))
        if len(preds) > 1 and self._batch_encoder is not None:
            try:
                rows = self._batch_encoder.encode_singles(preds[0][1], preds)
            except Exception:
                _logger.debug("otel-ml: column-wise encoding of single events failed; one by one", exc_info=True)
                rows = None
            if rows is not None:
                name = preds[0][1].name
                return [(name, row) for row in rows]
        out = []
        for rec in preds:
            try:
                item = self._prediction(*rec[1:])
            except Exception:
                self._invalid(rec)
                continue
            if item is not None:
                out.append(item)
        return out

    def _drop_remaining(self, out: list[Any]) -> None:
        counts: dict[str, int] = {}
        for name, _ in out:
            counts[name] = counts.get(name, 0) + 1
        if self._pending is not None:  # the rest of a batch, not encoded just to be counted
            self._pending = None
            counts[self._pending_name] = counts.get(self._pending_name, 0) + max(0, self._pending_left)
        while self.queue:
            rec = self.queue.popleft()
            counts[_spec_of(rec).name] = counts.get(_spec_of(rec).name, 0) + _events_of(rec)
        for name, n in counts.items():
            if n:
                self.metrics.record_drop(name, DropReason.SHUTDOWN, n)

    # --- records -> events ---------------------------------------------------------------------------------------
    def _expand(self, rec: tuple[Any, ...]) -> Iterator[Any]:
        kind = rec[0]
        try:
            if kind == K_PRED:
                return _one(self._prediction(*rec[1:]))
            if kind == K_LABEL:
                return _one(self._label(rec[1], rec[2], rec[3], rec[4], rec[5]))
            if kind == K_ERROR:
                spec = rec[1]
                self.metrics.record_duration(spec.key, rec[2] / 1e9, rec[3])
                self.metrics.record_error(spec.key, rec[3])
                return iter(())
            if kind == K_BATCH:
                return self._batch(*rec[1:])
            if kind == K_LABELS:
                return self._labels(rec[1], rec[2], rec[3], rec[4])
            if kind == K_CALL:
                return self._call(*rec[1:])
        except Exception:
            self._invalid(rec)
        return iter(())

    def _invalid(self, rec: tuple[Any, ...], n: int | None = None) -> None:
        _logger.debug("otel-ml: dropping an invalid record", exc_info=True)
        try:
            self.metrics.record_drop(_spec_of(rec).name, DropReason.INVALID, _events_of(rec) if n is None else n)
        except Exception:
            _logger.debug("otel-ml: failed to count an invalid record", exc_info=True)

    def _prediction(
        self, spec: ModelSpec, time_ns: int, pid: Any, prediction: Any, scores: Any, features: Any, segments: Any,
        label: Any, span: Any, duration_ns: int | None,
    ) -> Any:
        norm = self.normalizer
        metrics = self.metrics
        if duration_ns is not None:
            metrics.record_duration(spec.key, duration_ns / 1e9)
        pid = pid if type(pid) is str and len(pid) <= 256 else norm._str(spec, pid)
        cls: str | None
        score: float | None
        if (type(prediction) is str and type(scores) is float and scores - scores == 0.0
                and len(prediction) <= MAX_STRING_LENGTH and spec.task in CLASSIFICATION):
            # the common (class, finite score) call: what Normalizer.prediction returns for it, without the call
            pairs: list[tuple[str, Any]] = [(ML_PREDICTION_VALUE, prediction), (ML_PREDICTION_SCORE, scores)]
            ok, cls, score = True, prediction, scores
        else:
            pairs = []
            ok, cls, score = norm.prediction(spec, prediction, scores, pairs)
        if not ok or pid is None:
            metrics.record_drop(spec.name, DropReason.INVALID)
            return None
        encoded: list[Any] = []
        if features is not None:
            if self._feature_encoder is None:
                norm.features(spec, features, pairs)
            else:
                norm.features(spec, features, encoded, self._feature_encoder)
        if segments:
            norm.segments(spec, segments, pairs)
        if label is not MISSING:
            norm.label(spec, label, pairs)
        metrics.record_prediction(spec.key, cls, score)
        return self.sink.event(spec, False, time_ns, pid, pairs, span, encoded)

    def _label(self, spec: ModelSpec, time_ns: int, pid: Any, label: Any, relevance: Any) -> Any:
        norm = self.normalizer
        pid = pid if type(pid) is str and len(pid) <= 256 else norm._str(spec, pid)
        pairs: list[tuple[str, Any]] = []
        if pid is None or not norm.label(spec, label, pairs, relevance):
            self.metrics.record_drop(spec.name, DropReason.INVALID)
            return None
        return self.sink.event(spec, True, time_ns, pid, pairs, None)

    def _batch(
        self, spec: ModelSpec, time_ns: int, ids: Any, predictions: Any, scores: Any, features: Any, segments: Any,
        labels: Any, span: Any, duration_ns: int | None,
    ) -> Iterator[Any]:
        n = len(ids)
        norm = self.normalizer
        if duration_ns is not None:
            self.metrics.record_duration(spec.key, duration_ns / 1e9)
        if self._batch_encoder is not None:
            records = self._fast_batch(spec, time_ns, ids, predictions, scores, features, segments, labels, span)
            if records is not None:
                yield from zip(repeat(spec.name), records)
                return
        try:
            preds, row_scores = norm.batch_rows(spec, predictions, scores, n)
            if len(preds) > n or len(row_scores) > n:  # more rows than ids (MAX_BATCH_ROWS or fewer ids given)
                norm.truncated[(spec.name, TruncationReason.TOO_MANY_ROWS)] += 1
            feats = norm.feature_rows(spec, features, n)
            segs = norm.segment_rows(segments, n)
            labs: Iterable[Any] = norm.label_rows(labels, n)
        except Exception:
            self._invalid((K_BATCH, spec, time_ns, ids))
            return
        for pid, p, sc, f, sg, lab in zip(ids, preds, row_scores, feats, segs, labs, strict=False):
            try:
                event = self._prediction(spec, time_ns, pid, p, sc, f, sg, lab, span, None)
            except Exception:
                self._invalid((K_PRED, spec), 1)
                continue
            if event is not None:
                yield event

    def _fast_batch(
        self, spec: ModelSpec, time_ns: int, ids: Any, predictions: Any, scores: Any, features: Any, segments: Any,
        labels: Any, span: Any,
    ) -> list[bytes] | None:
        """The batch's records through the column-wise encoder, or ``None`` for the generic path (also when the
        encoder fails unexpectedly: the generic path then handles, validates and counts the batch)."""
        assert self._batch_encoder is not None
        try:
            return self._batch_encoder.encode(spec, time_ns, ids, predictions, scores, features, segments,
                                              labels is MISSING or labels is None, span)
        except Exception:
            _logger.debug("otel-ml: column-wise batch encoding failed; using the generic path", exc_info=True)
            return None

    def _labels(self, spec: ModelSpec, time_ns: int, ids: Any, labels: Any) -> Iterator[Any]:
        for pid, lab in zip(ids, self.normalizer.label_rows(labels, len(ids)), strict=False):
            try:
                event = self._label(spec, time_ns, pid, lab, None)
            except Exception:
                self._invalid((K_LABEL, spec), 1)
                continue
            if event is not None:
                yield event

    def _call(
        self, call: Any, time_ns: int, ids: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
        span: Any, duration_ns: int,
    ) -> Iterator[Any]:
        if isinstance(ids, str):
            return _one(self._call_single(call, time_ns, ids, args, kwargs, result, span, duration_ns))
        prediction, scores, features, segments = call.extract(args, kwargs, result)
        return self._batch(call.spec, time_ns, ids, prediction, scores, features, segments, None, span, duration_ns)

    def _call_single(
        self, call: Any, time_ns: int, pid: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
        span: Any, duration_ns: int,
    ) -> Any:
        prediction, scores, features, segments = call.extract(args, kwargs, result)
        return self._prediction(call.spec, time_ns, pid, prediction, scores, features, segments, MISSING, span,
                                duration_ns)


def _one(item: Any) -> Iterator[Any]:
    return iter(()) if item is None else iter((item,))


class State:
    """Process-wide pipeline selection; resolved lazily at the first event, replaced by ``configure``."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self._lock = threading.RLock()
        self._atexit = False

    def resolve(self) -> Pipeline:
        """The pipeline to use: the configured one, else one from the environment, else the no-op."""
        with self._lock:
            if self.pipeline is None:
                try:
                    from otel_ml.instrumentation.config import build_settings

                    self.pipeline = make_pipeline(build_settings(explicit=False))
                except Exception:
                    _logger.warning("otel-ml: could not configure from the environment; disabled", exc_info=True)
                    self.pipeline = Pipeline()
            return self.pipeline

    def install(self, pipeline: Pipeline) -> None:
        """Replace the pipeline (the old one is shut down first)."""
        with self._lock:
            old = self.pipeline
            self.pipeline = None
            if old is not None:
                old.shutdown()
            self.pipeline = pipeline
            if pipeline.active and not self._atexit:
                atexit.register(_shutdown_at_exit)
                self._atexit = True

    def after_fork_in_child(self) -> None:
        """Reinitialise the pipeline in a forked child."""
        self._lock = threading.RLock()
        p = self.pipeline
        if isinstance(p, WorkerPipeline):
            p.after_fork_in_child()


STATE = State()
"""The process-wide state."""


def _shutdown_at_exit() -> None:
    p = STATE.pipeline
    if p is not None:
        p.shutdown()


def make_pipeline(settings: Settings) -> Pipeline:
    """Build the pipeline for ``settings`` (``noop``, ``otlp`` or ``sdk`` mode)."""
    if settings.mode == "noop":
        return Pipeline()
    if settings.mode == "sdk":
        from otel_ml.instrumentation.sinks import SdkSink

        def sdk_sink(p: WorkerPipeline) -> Any:
            return SdkSink(settings, p.queue_len)

        return WorkerPipeline(settings, sdk_sink)

    from otel_ml.instrumentation.sinks import OtlpSink

    def otlp_sink(p: WorkerPipeline) -> Any:
        return OtlpSink(settings, make_transport(settings))

    return WorkerPipeline(settings, otlp_sink)


def make_transport(settings: Settings) -> Any:
    """The transport for ``settings`` (a configured transport object is reused only in the original process)."""
    from otel_ml.instrumentation import transport as t

    if settings.transport is not None:
        return settings.transport
    urls = {t.LOGS: settings.logs_endpoint, t.METRICS: settings.metrics_endpoint}
    if settings.protocol == "console":
        return t.ConsoleTransport()
    if settings.protocol == "grpc":
        return t.GrpcTransport(urls, settings.headers, settings.compression, settings.certificate_file)
    return t.HttpTransport(urls, settings.headers, settings.compression, settings.certificate_file)


def _after_fork_in_child() -> None:
    state = _state_ref()
    if state is not None:
        state.after_fork_in_child()


_state_ref = weakref.ref(STATE)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
