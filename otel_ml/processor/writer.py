"""The single writer thread: group commit of decoded requests, periodic ticks, admission control.

Receiver threads decode requests (protobuf parsing runs outside the writer) and :meth:`Writer.submit` them; the writer
takes every request waiting, processes them in one :meth:`~otel_ml.processor.step.Processor.process` call (one
transaction, one commit) and resolves their futures only after the commit, so an acknowledgement always means
"committed". If a group fails because the store failed (a :class:`~otel_ml.errors.StoreError`, e.g.
:class:`~otel_ml.processor.store.base.StorageError`: full disk, I/O error, lock, lost server), every request of the
group is answered :class:`StoreUnavailable` (retryable) at once: the store is back in a known state and the next group
starts a fresh transaction (a conflict marked ``retryable`` is run again first, up to :data:`TRANSIENT_RETRIES`
attempts). If a group fails for another reason, each request is retried alone, so one bad request cannot fail the
others, and a request that fails alone is run once more with the store checking every column of the rows it reads
(``strict_decoding``: a damaged row that still decodes is quarantined rather than failing its key forever).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

from otel_ml.errors import StoreError
from otel_ml.processor.decode import Decoded
from otel_ml.processor.step import Processor, StepResult

_logger = logging.getLogger(__name__)
MAX_GROUP_RECORDS = 20_000
"""Records per group commit (bounds the latency of one transaction)."""
TICK_INTERVAL_S = 1.0
TRANSIENT_RETRIES = 3
"""Attempts of a group whose store error is marked ``retryable`` (deadlock, serialization failure) before the
requests are retried one by one (and then answered UNAVAILABLE, so the sender retries later)."""


class StoreUnavailable(StoreError):
    """The step could not be committed (the sender should retry)."""


class Admission:
    """Bounded number of requests in flight; beyond it, requests are refused with a retryable code."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self.inflight = 0

    def try_enter(self) -> bool:
        """Take a slot, or return False when all are taken."""
        with self._lock:
            if self.inflight >= self.limit:
                return False
            self.inflight += 1
            return True

    def leave(self) -> None:
        """Release a slot."""
        with self._lock:
            self.inflight -= 1


class Writer:
    """Owns the :class:`~otel_ml.processor.step.Processor` on one thread."""

    def __init__(self, processor: Processor, tick_interval: float = TICK_INTERVAL_S,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.processor = processor
        self.tick_interval = tick_interval
        self._queue: queue.Queue[tuple[Decoded, Future[StepResult]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="otel-ml-writer", daemon=True)
        self._stopping = False
        self._on_error = on_error
        self._next: list[tuple[Decoded, Future[StepResult]]] = []  # the next group, taken early (_take_next)
        self._stop_taken = False

    def start(self) -> Writer:
        """Start the thread."""
        self._thread.start()
        return self

    def submit(self, decoded: Decoded) -> Future[StepResult]:
        """Queue a decoded request; the future resolves after its commit (or raises :class:`StoreUnavailable`)."""
        fut: Future[StepResult] = Future()
        if self._stopping:
            fut.set_exception(StoreUnavailable("processor is shutting down"))
        else:
            self._queue.put((decoded, fut))
        return fut

    def stop(self, timeout: float = 30.0) -> None:
        """Process what is queued, run a last tick, stop the thread."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        next_tick = time.monotonic() + self.tick_interval
        running = True
        while running:
            group: list[tuple[Decoded, Future[StepResult]]] = []
            if self._next or self._stop_taken:  # taken during the last group (the store may be reading it already)
                group, self._next = self._next, []
                running = not self._stop_taken
            else:
                try:
                    item = self._queue.get(timeout=max(next_tick - time.monotonic(), 0.0))
                except queue.Empty:
                    pass
                else:
                    if item is None:
                        running = False
                    else:
                        group.append(item)
                        running = self._fill(group)
            if group:
                self._process(group, lookahead=running)
            if time.monotonic() >= next_tick or not running:
                next_tick = time.monotonic() + self.tick_interval
                try:
                    self.processor.tick()
                except StoreError as exc:  # logged by the store once per failure episode, counted by kind
                    _logger.debug("periodic tick failed (retried next tick): %s", exc)
                    if self._on_error:
                        self._on_error(exc)
                except Exception as exc:
                    _logger.exception("periodic tick failed (retried next tick)")
                    if self._on_error:
                        self._on_error(exc)
        # fail whatever arrived after the stop marker
        while True:
            try:
                rest = self._queue.get_nowait()
            except queue.Empty:
                break
            if rest is not None:
                rest[1].set_exception(StoreUnavailable("processor is shutting down"))

    def _fill(self, group: list[tuple[Decoded, Future[StepResult]]]) -> bool:
        """Add the requests queued now to ``group`` (up to :data:`MAX_GROUP_RECORDS`); False if the stop marker
        was taken."""
        records = sum(d.received for d, _ in group)
        while records < MAX_GROUP_RECORDS:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                return True
            if nxt is None:
                return False
            group.append(nxt)
            records += nxt[0].received
        return True

    def _take_next(self) -> list[Decoded]:
        """The step's lookahead: the requests queued now become the next group (processed right after this one, so a
        store that reads ahead can start on them while this group finishes)."""
        if self._next or self._stop_taken:
            return []
        if not self._fill(self._next):
            self._stop_taken = True
        return [d for d, _ in self._next]

    def _process(self, group: list[tuple[Decoded, Future[StepResult]]], attempt: int = 1,
                 lookahead: bool = False) -> None:
        try:
            items = [d for d, _ in group]
            results = (self.processor.process(items, lookahead=self._take_next)
                       if lookahead and self.processor.reads_ahead else self.processor.process(items))
        except Exception as exc:
            if getattr(exc, "retryable", False) and attempt < TRANSIENT_RETRIES:
                _logger.warning("transient store conflict, running the step again: %s", exc)
                time.sleep(0.01 * attempt)
                self._process(group, attempt + 1)
                return
            if isinstance(exc, StoreError) and not getattr(exc, "retryable", False):
                # the store failed (full disk, I/O, lock, lost server...), not the requests: all of them are
                # answered retryable at once, none was committed (no per-request retries against a broken store)
                for _, fut in group:
                    unavailable = StoreUnavailable(str(exc))
                    unavailable.__cause__ = exc
                    fut.set_exception(unavailable)
                return
            store = self.processor.store
            if len(group) == 1 and not store.strict_decoding:
                # a damaged stored row can decode to a row-shaped tuple with a value of the wrong type; run the
                # request once more with every column checked, so such a row is quarantined instead of failing it
                store.strict_decoding = True
                try:
                    self._process(group, attempt)
                finally:
                    store.strict_decoding = False
                return
            if len(group) == 1:
                _logger.exception("a request could not be committed")
                unavailable = StoreUnavailable(str(exc))
                unavailable.__cause__ = exc  # what `raise ... from exc` records, for whoever awaits the future
                group[0][1].set_exception(unavailable)
                return
            for one in group:  # isolate the failing request
                self._process([one])
            return
        for (_, fut), result in zip(group, results, strict=True):
            fut.set_result(result)
