"""The bounded queue between inference code and the background worker that converts and exports its records.

Caller side (:meth:`ExportQueue.submit`): appends one :mod:`record <otel_ml.instrumentation.records>` to a
:class:`collections.deque` after checking its length; nothing else. **Overflow policy: drop newest.** When the
queue holds ``queue_size`` records, the new record is dropped and counted in
``ml.client.events.dropped{ml.reason="queue_full"}`` (one per event the record would have produced), so inference
never waits and memory stays bounded; the records already queued are the ones exported. (The SDK's batch processor
instead evicts the oldest record, without exporting a count.)

Worker side: a daemon thread wakes every ``schedule_delay`` (or when ``batch_size`` records are queued), turns
records into events (:class:`~otel_ml.instrumentation.convert.RecordConverter`), hands them to the sink in batches
of at most ``batch_size`` events, and exports the client metrics every ``metric_interval``. While an export is
retried (backoff, endpoint down or slow) new records keep queueing up to the bound and are then dropped and counted.

Shutdown (:func:`otel_ml.shutdown`, also run ``atexit``) exports what is queued within a timeout and counts the
rest as ``shutdown`` drops. In a forked child the queue starts afresh (:mod:`~otel_ml.instrumentation.fork`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from otel_ml.compat import suppress_instrumentation_in_this_thread
from otel_ml.instrumentation import fork
from otel_ml.instrumentation.config import Settings
from otel_ml.instrumentation.convert import RecordConverter
from otel_ml.instrumentation.records import (
    CallRecord,
    PredictionRecord,
    Record,
    events_of,
    spec_of,
)
from otel_ml.semconv.attributes import DropReason

_logger = logging.getLogger(__name__)


class NoopExportQueue:
    """Discards every record: what runs when nothing is configured (or ``OTEL_SDK_DISABLED=true``).

    The recording methods check :attr:`active` before building a record, so a no-op call costs about the
    generation of its prediction id.
    """

    active = False

    def submit(self, rec: Record) -> None:
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


class ExportQueue:
    """Bounded queue plus one daemon worker thread feeding a sink (see the module docstring).

    Args:
        settings: Queue and batch sizes, delays, timeouts.
        sink_factory: Builds the sink for this queue (called again in a forked child).
    """

    active = True

    def __init__(self, settings: Settings, sink_factory: Callable[[ExportQueue], Any]) -> None:
        self.settings = settings
        self._sink_factory = sink_factory
        self._start()

    def _start(self) -> None:
        s = self.settings
        self.queue: deque[Record] = deque()
        self.max_len = s.queue_size
        self.wake_at = min(s.batch_size, s.queue_size)
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._flush_lock = threading.Condition()
        self._flush_requested = 0
        self._flush_done = 0
        self._stopped = False
        self._deadline: float | None = None
        self.sink = self._sink_factory(self)
        self.metrics = self.sink.metrics
        self.converter = RecordConverter(self.sink)
        self._pending: Iterator[Any] | None = None
        self._pending_left = 0
        self._pending_name = ""
        self.cpu_ns = 0
        self._thread = threading.Thread(target=self._run, name="otel-ml-worker", daemon=True)
        self._thread.start()

    # --- caller side -------------------------------------------------------------------------------------------------
    def submit(self, rec: Record) -> None:
        """Queue a record, or drop it (newest) and count when the queue is full. Never blocks."""
        q = self.queue
        n = len(q)
        if n < self.max_len:
            q.append(rec)
            if n == self.wake_at:
                self.wake.set()
        else:
            self.drop_full(rec)

    def drop_full(self, rec: Record) -> None:
        """Count a record dropped because the queue is full (drop-newest policy)."""
        try:
            if type(rec) is PredictionRecord:
                self.metrics.record_drop(rec.spec.name, DropReason.QUEUE_FULL)
                return
            count = events_of(rec)
            if count:
                self.metrics.record_drop(spec_of(rec).name, DropReason.QUEUE_FULL, count)
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
        """Fresh queue, worker, metrics and transport in a forked child (the parent's records stay the parent's)."""
        if self._stopped:
            return
        fork.renew_generated_instance_id(self.settings)
        self._start()

    # --- worker ------------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:  # otel-ml's own exports are never traced by the app's instrumentations (gRPC, urllib3, requests...)
            suppress_instrumentation_in_this_thread()
        except Exception:
            _logger.debug("otel-ml: could not suppress instrumentation on the worker", exc_info=True)
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
                    if s.client_metrics:
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
        truncated = self.converter.normalizer.truncated
        if truncated:
            self.metrics.add_truncated(truncated)

    def _drain(self, stopping: bool) -> None:
        """Export the records queued now (all of them when stopping, until the deadline).

        Records that arrive meanwhile wait for the next round, so that a producer faster than the worker cannot
        keep it from exporting metrics or completing a flush.
        """
        batch_size = self.settings.batch_size
        q = self.queue
        conv = self.converter
        grouped = conv.batch_encoder is not None
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
                if type(rec) is PredictionRecord or (type(rec) is CallRecord and type(rec.ids) is str):
                    if grouped:
                        room = batch_size - len(out)
                        run = self._singles_run(rec, q, room if stopping else min(room, budget + 1))
                        budget -= len(run) - 1
                        out.extend(conv.singles(run))
                    else:  # one event: no iterator machinery
                        item = conv.single(rec)
                        if item is not None:
                            out.append(item)
                    if len(out) >= batch_size:
                        self.sink.send(out, self._stop, self._deadline)
                        out = []
                    continue
                it = self._pending = conv.expand(rec)
                self._pending_left = events_of(rec)
                self._pending_name = spec_of(rec).name
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
    def _singles_run(
        rec: PredictionRecord | CallRecord, q: deque[Record], most: int,
    ) -> list[PredictionRecord | CallRecord]:
        """``rec`` (a single prediction) and the single predictions of the same model queued right after it (at
        most ``most`` records in all), taken off the queue."""
        spec = spec_of(rec)
        run = [rec]
        while len(run) < most and q:
            nxt = q[0]
            if type(nxt) is PredictionRecord:
                if nxt.spec is not spec:
                    break
            elif type(nxt) is not CallRecord or type(nxt.ids) is not str or nxt.call.spec is not spec:
                break
            run.append(nxt)
            q.popleft()
        return run

    def _drop_remaining(self, out: list[Any]) -> None:
        counts: dict[str, int] = {}
        for name, _ in out:
            counts[name] = counts.get(name, 0) + 1
        if self._pending is not None:  # the rest of a batch, not encoded just to be counted
            self._pending = None
            counts[self._pending_name] = counts.get(self._pending_name, 0) + max(0, self._pending_left)
        while self.queue:
            rec = self.queue.popleft()
            name = spec_of(rec).name
            counts[name] = counts.get(name, 0) + events_of(rec)
        for name, n in counts.items():
            if n:
                self.metrics.record_drop(name, DropReason.SHUTDOWN, n)

