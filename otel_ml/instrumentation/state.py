"""The process-wide export queue: resolved lazily at the first event, replaced by :func:`otel_ml.configure`.

Recording calls read :data:`STATE` ``.queue`` (one attribute load) and fall back to :meth:`State.resolve` the first
time, which configures otel-ml from the ``OTEL_*`` environment (or the no-op when nothing is configured).
"""

from __future__ import annotations

import atexit
import logging
import threading

from otel_ml.instrumentation import fork
from otel_ml.instrumentation.export_queue import ExportQueue, NoopExportQueue
from otel_ml.instrumentation.factory import make_export_queue

_logger = logging.getLogger(__name__)

AnyExportQueue = ExportQueue | NoopExportQueue


class State:
    """Which export queue this process records into."""

    def __init__(self) -> None:
        self.queue: AnyExportQueue | None = None
        self._lock = threading.RLock()
        self._atexit = False

    def resolve(self) -> AnyExportQueue:
        """The queue to use: the configured one, else one from the environment, else the no-op."""
        with self._lock:
            if self.queue is None:
                try:
                    from otel_ml.instrumentation.config import build_settings

                    self.queue = make_export_queue(build_settings(explicit=False))
                except Exception:
                    _logger.warning("otel-ml: could not configure from the environment; disabled", exc_info=True)
                    self.queue = NoopExportQueue()
            return self.queue

    def install(self, queue: AnyExportQueue) -> None:
        """Replace the queue (the old one is shut down first)."""
        with self._lock:
            old = self.queue
            self.queue = None
            if old is not None:
                old.shutdown()
            self.queue = queue
            if queue.active and not self._atexit:
                atexit.register(_shutdown_at_exit)
                self._atexit = True

    def after_fork_in_child(self) -> None:
        """Reinitialise the queue in a forked child (see :mod:`~otel_ml.instrumentation.fork`)."""
        self._lock = threading.RLock()
        q = self.queue
        if isinstance(q, ExportQueue):
            q.after_fork_in_child()


STATE = State()
"""The process-wide state."""
fork.register(STATE)


def _shutdown_at_exit() -> None:
    q = STATE.queue
    if q is not None:
        q.shutdown()
