"""The processor app: store, stages, pipeline, writer, memory limiter, metric output and the two OTLP receivers.

Receivers: :mod:`~otel_ml.processor.grpc_receiver` (OTLP/gRPC) and :mod:`~otel_ml.processor.http_receiver`
(OTLP/HTTP on :mod:`~otel_ml.processor.httpserver`), sharing :class:`~otel_ml.processor.ingest.Ingest` (admission,
decode, commit). Their answers are documented in their modules. TLS and auth: :mod:`~otel_ml.processor.security`;
memory limiter: :mod:`~otel_ml.processor.memory`.

Lifecycle: :meth:`ProcessorApp.start` binds every endpoint (an error there is the CLI's exit status 1);
:meth:`ProcessorApp.stop` is the graceful shutdown of ``shutdown_grace``: refuse new requests with retryable codes
(``shutting_down``), stop listening, let the requests in flight finish and commit, run a last writer tick, export the
metrics a last time and close the store, each step bounded so that the whole fits in the grace period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from otel_ml.processor import _native, caches
from otel_ml.processor.config import ProcessorConfig
from otel_ml.processor.export import MetricsOutput, publish_final_totals
from otel_ml.processor.grpc_receiver import GRPC_HARD_LIMIT_FACTOR, LogsServicer, grpc_server
from otel_ml.processor.http_receiver import OtlpHttpApp
from otel_ml.processor.httpserver import HttpEndpoint, Limits
from otel_ml.processor.ingest import COMMIT_TIMEOUT_S, Ingest, response
from otel_ml.processor.memory import EXPANSION, MemoryLimiter, total_memory
from otel_ml.processor.security import Authenticator, ssl_context
from otel_ml.processor.stage import Stage, load_stages
from otel_ml.processor.step import Processor
from otel_ml.processor.store import BaseJoinStore, open_store
from otel_ml.processor.writer import Admission, Writer
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Receiver

__all__ = ["COMMIT_TIMEOUT_S", "GRPC_HARD_LIMIT_FACTOR", "Ingest", "LogsServicer", "ProcessorApp", "response"]

_logger = logging.getLogger(__name__)
EXPORT_RESERVE_S = 5.0
"""Part of the shutdown grace kept for the final commit and metric export (at most a quarter of it)."""


def _memory_limiter(config: ProcessorConfig) -> MemoryLimiter | None:
    ml = config.memory_limiter
    if ml is None:
        return None
    soft, hard = ml.limits(total_memory())
    limiter = MemoryLimiter(soft, hard, ml.check_interval)
    limiter.register_shedder(caches.shed)  # the decoder's and the aggregates' byte-bounded caches
    return limiter


class ProcessorApp:
    """The whole processor: store, stages, processor step (``pipeline``), writer, memory limiter, metric output and
    receivers."""

    def __init__(self, config: ProcessorConfig, clock: Callable[[], float] = time.time,
                 stages: list[Stage] | None = None, store: BaseJoinStore | None = None) -> None:
        self.config = config
        self.clock = clock
        self.store = store if store is not None else open_store(config.store, config.resolved_instance_id())
        self.pipeline = Processor(config, self.store, load_stages(config, clock) if stages is None else stages, clock)
        self.admission = Admission(config.receiver.max_inflight_requests)
        self.writer = Writer(self.pipeline)
        self.limiter = _memory_limiter(config)
        live: dict[str, Callable[[], float]] = {m.PROCESSOR_QUEUE_DEPTH.name: lambda: float(self.admission.inflight)}
        if self.limiter is not None:
            limiter = self.limiter
            live[m.PROCESSOR_MEMORY_RSS.name] = lambda: float(limiter.rss())
            live[m.PROCESSOR_MEMORY_SOFT_LIMIT.name] = lambda: float(limiter.soft)
            live[m.PROCESSOR_MEMORY_HARD_LIMIT.name] = lambda: float(limiter.hard)
        self._live = live
        self.output: MetricsOutput | None = None
        self.ingest = Ingest(self.writer, self.admission, self.pipeline.aggregates, clock, self.limiter)
        self.grpc: grpc.Server | None = None
        self.http: HttpEndpoint | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._decode_pool: futures.ThreadPoolExecutor | None = None
        self.adopter: Any = None

    @property
    def prometheus_port(self) -> int | None:
        """Bound port of the scrape endpoint (None when disabled)."""
        return self.output.prometheus_port if self.output is not None else None

    def start(self) -> ProcessorApp:
        """Start the writer, the memory limiter, the metric output and the receivers.

        Raises:
            OSError: An endpoint cannot be bound or a TLS/token file cannot be read (what is started is stopped).
        """
        try:
            self._start()
        except BaseException:
            self.stop(grace=1.0)
            raise
        return self

    def _start(self) -> None:
        self.writer.start()
        make_adopter = getattr(self.store, "adopter", None)  # shared store: publishes gone replicas' final totals
        if make_adopter is not None and self.config.metrics.otlp is not None:
            self.adopter = make_adopter(self.config.store.replica_timeout,
                                        lambda instance, totals: publish_final_totals(self.config, instance, totals))
            self.adopter.start()
        if self.limiter is not None:
            self.limiter.start()
            _logger.info("memory limiter: soft limit %.0f MiB, hard limit %.0f MiB (RSS now %.0f MiB)",
                         self.limiter.soft / 2**20, self.limiter.hard / 2**20, self.limiter.rss() / 2**20)
            need = EXPANSION * self.config.receiver.max_request_bytes
            if self.limiter.hard - self.limiter.rss() < need:
                _logger.warning("memory limiter: a request of receiver.max_request_bytes may need %.0f MiB, more than "
                                "the hard limit leaves (%.0f MiB): such requests will be refused every time; raise "
                                "memory_limiter.limit_mib or lower receiver.max_request_bytes", need / 2**20,
                                (self.limiter.hard - self.limiter.rss()) / 2**20)
        self.output = MetricsOutput(self.config, self.pipeline.aggregates, live=self._live)
        _logger.log(logging.WARNING if _native.degraded else logging.INFO, "decoding with the %s", _native.status)
        rc = self.config.receiver
        if rc.grpc is not None:
            self.grpc, self.grpc_port = grpc_server(self.ingest, self.config)
            _logger.info("OTLP/gRPC receiver listening on %s (port %s, %s%s)", rc.grpc.endpoint, self.grpc_port,
                         "TLS" if rc.grpc.tls else "plaintext", ", bearer token auth" if rc.grpc.auth else "")
        if rc.http is not None:
            h = rc.http
            self._decode_pool = futures.ThreadPoolExecutor(rc.max_inflight_requests, "otel-ml-http-decode")
            counters = self.ingest.counters
            app = OtlpHttpApp(self.ingest, max_request_bytes=rc.max_request_bytes, retry_after=rc.retry_after,
                              read_timeout=h.read_timeout, auth=Authenticator(h.auth) if h.auth else None,
                              executor=self._decode_pool)
            tls = ssl_context(h.tls, lambda r: counters.auth_failure(Receiver.HTTP, r)) if h.tls else None
            limits = Limits(max_connections=h.max_connections, read_header_timeout=h.read_header_timeout,
                            idle_timeout=h.idle_timeout, retry_after=rc.retry_after)
            self.http = HttpEndpoint(app, h.endpoint, name="http", receiver=Receiver.HTTP, limits=limits,
                                     counters=counters, ssl_context=tls).start()
            self.http_port = self.http.port
            _logger.info("OTLP/HTTP receiver listening on %s (port %s, %s%s)", h.endpoint, self.http_port,
                         "TLS" if h.tls else "plaintext", ", bearer token auth" if h.auth else "")

    def stop(self, grace: float | None = None) -> bool:
        """Graceful shutdown within ``grace`` seconds (default ``shutdown_grace``); True when nothing in flight had
        to be cancelled and every step finished in time."""
        grace = self.config.shutdown_grace if grace is None else grace
        deadline = time.monotonic() + grace
        reserve = min(EXPORT_RESERVE_S, grace / 4)
        clean = True
        self.ingest.close()  # from now on: UNAVAILABLE / 503 shutting_down, before any body is read
        drain_until = deadline - reserve
        stopped = self.grpc.stop(max(drain_until - time.monotonic(), 0.0)) if self.grpc is not None else None
        if self.http is not None:
            clean &= self.http.stop(max(drain_until - time.monotonic(), 0.0))
        if stopped is not None:
            clean &= stopped.wait(max(drain_until - time.monotonic(), 0.0) + 0.5)
        # requests still in flight are waiting for their commit: the writer stays up until they have it
        while self.admission.inflight and time.monotonic() < drain_until:
            time.sleep(0.01)
        clean &= self.admission.inflight == 0
        writer_budget = max(deadline - time.monotonic() - reserve / 2, 0.5)
        self.writer.stop(timeout=writer_budget)
        if self.adopter is not None:
            self.adopter.stop()
        if self._decode_pool is not None:
            self._decode_pool.shutdown(wait=False, cancel_futures=True)
        if self.limiter is not None:
            self.limiter.stop()
        if self.output is not None:
            try:
                self.output.shutdown(timeout=max(deadline - time.monotonic() - 0.2, 0.2))
            except Exception:
                clean = False
                _logger.exception("final metric export failed")
        self.pipeline.close()
        late = time.monotonic() - deadline
        if late > 0:
            _logger.warning("shutdown took %.1fs longer than shutdown_grace (%.0fs)", late, grace)
        return clean and late <= 0
