"""Exporters of encoded OTLP requests: OTLP/HTTP (protobuf), OTLP/gRPC, console and in-memory.

Every transport sends one already-encoded ``Export*ServiceRequest`` and reports an :class:`Outcome`;
:func:`send_with_retry` retries retryable outcomes with exponential backoff and full jitter, honouring the server's
``Retry-After`` (HTTP) or ``google.rpc.RetryInfo`` (gRPC) delay, within a time budget, and gives up early when
the export queue shuts down. Retryable per the OTLP specification: HTTP 429, 502, 503, 504 and connection errors; gRPC
CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS.
"""

from __future__ import annotations

import email.utils
import gzip
import http.client
import logging
import random
import ssl
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

from otel_ml.instrumentation import wire_read

_logger = logging.getLogger(__name__)

LOGS = "logs"
METRICS = "metrics"
_GRPC_METHODS = {
    LOGS: "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    METRICS: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
_HTTP_RETRYABLE = frozenset({429, 502, 503, 504})
_MAX_BACKOFF_S = 16.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of one export attempt.

    Attributes:
        ok: The request was accepted.
        retryable: A failed request may succeed later.
        retry_after: Server-suggested delay in seconds, if any.
        rejected: Records the server reported as rejected in ``partial_success``.
        detail: Status text for logs.
    """

    ok: bool
    retryable: bool = False
    retry_after: float | None = None
    rejected: int = 0
    detail: str = ""


class Transport(Protocol):
    """Sends encoded OTLP requests. Implementations are used from one thread (the export queue's worker)."""

    def send(self, signal: str, body: bytes, timeout: float) -> Outcome:
        """Send one request of ``signal`` (``logs`` or ``metrics``)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def _partial_rejected(signal: str, payload: bytes) -> int:
    if not payload:
        return 0
    try:
        return wire_read.partial_rejected(payload)
    except ValueError:  # a response we cannot parse still means success
        return 0


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class HttpTransport:
    """OTLP/HTTP with binary protobuf bodies over one persistent ``http.client`` connection per signal."""

    def __init__(self, urls: dict[str, str], headers: dict[str, str], compression: str,
                 certificate_file: str | None = None) -> None:
        self._urls = {s: urllib.parse.urlsplit(u) for s, u in urls.items()}
        self._cafile = certificate_file
        self._headers = {"Content-Type": "application/x-protobuf", "User-Agent": "otel-ml", **headers}
        self._gzip = compression == "gzip"
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._conns: dict[str, http.client.HTTPConnection] = {}

    def _conn(self, signal: str, timeout: float) -> http.client.HTTPConnection:
        conn = self._conns.get(signal)
        if conn is None:
            url = self._urls[signal]
            if url.scheme == "https":
                conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443, timeout=timeout,
                                                   context=ssl.create_default_context(cafile=self._cafile))
            else:
                conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=timeout)
            self._conns[signal] = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def send(self, signal: str, body: bytes, timeout: float) -> Outcome:
        """POST one request; connection errors and 429/502/503/504 are retryable."""
        if self._gzip:
            body = gzip.compress(body, compresslevel=5)
        url = self._urls[signal]
        try:
            conn = self._conn(signal, timeout)
            conn.request("POST", url.path or "/", body=body, headers=self._headers)
            resp = conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_conn(signal)
            return Outcome(False, True, None, 0, f"{type(exc).__name__}: {exc}")
        if 200 <= resp.status < 300:
            return Outcome(True, rejected=_partial_rejected(signal, payload))
        if resp.getheader("Connection", "").lower() == "close":
            self._drop_conn(signal)
        retryable = resp.status in _HTTP_RETRYABLE
        return Outcome(False, retryable, _retry_after(resp.getheader("Retry-After")) if retryable else None, 0,
                       f"HTTP {resp.status}")

    def _drop_conn(self, signal: str) -> None:
        conn = self._conns.pop(signal, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connections."""
        for signal in list(self._conns):
            self._drop_conn(signal)


class GrpcTransport:
    """OTLP/gRPC: a generic unary call carrying the encoded request bytes (no generated stubs on the hot path)."""

    def __init__(self, urls: dict[str, str], headers: dict[str, str], compression: str,
                 certificate_file: str | None = None) -> None:
        import grpc

        self._grpc = grpc
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())
        self._compression = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
        self._channels: dict[str, Any] = {}
        self._calls: dict[str, Any] = {}
        for signal, url in urls.items():
            parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
            target = f"{parsed.hostname}:{parsed.port or (443 if parsed.scheme == 'https' else 4317)}"
            key = (target, parsed.scheme)
            channel = self._channels.get(str(key))
            if channel is None:
                if parsed.scheme == "https":
                    roots = None
                    if certificate_file is not None:
                        with open(certificate_file, "rb") as f:
                            roots = f.read()
                    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots))
                else:
                    channel = grpc.insecure_channel(target)
                self._channels[str(key)] = channel
            self._calls[signal] = channel.unary_unary(_GRPC_METHODS[signal])
        self._retryable = frozenset({
            grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DATA_LOSS})

    def send(self, signal: str, body: bytes, timeout: float) -> Outcome:
        """One unary ``Export`` call with the raw request bytes."""
        try:
            payload = self._calls[signal](body, timeout=timeout, metadata=self._metadata,
                                          compression=self._compression)
        except self._grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            delay = _grpc_retry_delay(exc)
            return Outcome(False, code in self._retryable, delay, 0, f"gRPC {code}")
        return Outcome(True, rejected=_partial_rejected(signal, payload))

    def close(self) -> None:
        """Close the channels."""
        for channel in self._channels.values():
            channel.close()


def _grpc_retry_delay(exc: Any) -> float | None:
    """The delay of a ``google.rpc.RetryInfo`` in the trailing metadata (``retry_delay = 1``: a ``Duration`` of
    ``seconds = 1``, ``nanos = 2``), or ``None``."""
    try:
        for key, value in exc.trailing_metadata() or ():
            if key == "google.rpc.retryinfo-bin":
                for number, wire_type, duration in wire_read.fields(value):
                    if number == 1 and wire_type == 2:
                        parts = {n: v for n, t, v in wire_read.fields(duration) if t == 0}
                        return float(parts.get(1, 0)) + float(parts.get(2, 0)) / 1e9
    except Exception:  # no or malformed RetryInfo: use our own backoff
        return None
    return None


class InMemoryTransport:
    """Keeps every request's bytes (tests, examples). Thread-safe to read."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()

    def send(self, signal: str, body: bytes, timeout: float) -> Outcome:
        """Store the request."""
        with self._lock:
            self.requests.append((signal, body))
        return Outcome(True)

    def logs(self) -> list[Any]:
        """Decoded ``ExportLogsServiceRequest`` messages received so far (needs ``opentelemetry-proto``)."""
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        with self._lock:
            return [ExportLogsServiceRequest.FromString(b) for s, b in self.requests if s == LOGS]

    def metrics(self) -> list[Any]:
        """Decoded ``ExportMetricsServiceRequest`` messages received so far (needs ``opentelemetry-proto``)."""
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        with self._lock:
            return [ExportMetricsServiceRequest.FromString(b) for s, b in self.requests if s == METRICS]

    def close(self) -> None:
        """Nothing to release."""


class ConsoleTransport(InMemoryTransport):
    """Prints each event as one line ``event_name {attributes}`` to stdout (and keeps the requests)."""

    def __init__(self, stream: Any = None, metrics: bool = False) -> None:
        super().__init__()
        self._stream = stream
        self._print_metrics = metrics

    def send(self, signal: str, body: bytes, timeout: float) -> Outcome:
        """Store and print."""
        super().send(signal, body, timeout)
        stream = self._stream or sys.stdout
        try:
            if signal == LOGS:
                for event_name, attrs in wire_read.log_records(body):
                    print(event_name, attrs, file=stream)
            elif self._print_metrics:
                for name, attrs, value in wire_read.metric_points(body):
                    print("metric", name, attrs, value, file=stream)
        except ValueError:
            print(f"otel-ml: could not decode a {signal} request", file=stream)
        return Outcome(True)


def send_with_retry(
    transport: Transport, signal: str, body: bytes, timeout: float, budget: float, stop: threading.Event,
    deadline: float | None = None,
) -> Outcome:
    """Send, retrying retryable outcomes with exponential backoff and full jitter within ``budget`` seconds.

    Gives up when the next wait would pass the budget (or ``deadline``, a ``time.monotonic`` value), or when
    ``stop`` is set (shutdown: one more attempt is not waited for).
    """
    start = time.monotonic()
    end = start + budget if deadline is None else min(start + budget, deadline)
    attempt = 0
    while True:
        attempt_timeout = max(0.05, min(timeout, end - time.monotonic())) if deadline is not None else timeout
        try:
            outcome = transport.send(signal, body, attempt_timeout)
        except Exception as exc:  # a transport bug must not kill the worker
            _logger.debug("otel-ml: %s export raised", signal, exc_info=True)
            outcome = Outcome(False, False, None, 0, repr(exc))
        if outcome.ok or not outcome.retryable:
            return outcome
        backoff = min(_MAX_BACKOFF_S, 0.1 * 2**attempt)
        delay = outcome.retry_after if outcome.retry_after is not None else random.uniform(0, backoff)
        attempt += 1
        if time.monotonic() + delay > end or stop.is_set():
            return outcome
        if stop.wait(delay):
            return outcome
