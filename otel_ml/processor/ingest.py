"""What both OTLP receivers share: admission (shutdown, in-flight bound, memory), decode, commit, self-counters.

A request goes through :meth:`Ingest.admit` *before its body is read*: refused while the processor shuts down
(``shutting_down``), when ``receiver.max_inflight_requests`` requests are in flight (``overloaded``) or when the
memory limiter cannot reserve room for it (``memory_limit``). Every refusal is retryable for the sender and counted
in ``ml.processor.requests.refused{ml.reason, ml.receiver}``. An admitted request then reserves memory as its body
arrives (:meth:`Admitted.grow`), is decoded (:meth:`Ingest.decode`, on the receiver's thread) and committed by the
writer (:meth:`Ingest.submit`); it is acknowledged only after the commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)

from otel_ml.processor.aggregates import Aggregates
from otel_ml.processor.decode import Decoded, decode_body
from otel_ml.processor.memory import MemoryLimiter, Reservation
from otel_ml.processor.step import StepResult
from otel_ml.processor.writer import Admission, Writer
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import RefuseReason

COMMIT_TIMEOUT_S: Final = 30.0
"""Longest wait for the commit of an admitted request; then the sender gets a retryable answer."""
MAX_MESSAGE_BYTES: Final = 512
"""Bound of every error message sent to a client (gRPC details, HTTP ``google.rpc.Status`` message)."""


def bounded(message: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """``message`` cut to at most ``limit`` UTF-8 bytes (with an ellipsis when cut)."""
    raw = message.encode("utf-8", "replace")
    if len(raw) <= limit:
        return message
    return raw[:limit - 3].decode("utf-8", "ignore") + "..."


def response(result: StepResult) -> ExportLogsServiceResponse:
    """OTLP response (``partial_success`` only when records were rejected)."""
    if not result.rejected:
        return ExportLogsServiceResponse()
    return ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
        rejected_log_records=result.rejected, error_message=bounded(result.error_message)))


class SelfCounters:
    """The receivers' self-telemetry counters (not tied to a commit; persisted with the next one)."""

    def __init__(self, aggregates: Aggregates) -> None:
        self._aggregates = aggregates

    def _add(self, name: str, receiver: str, reason: str) -> None:
        self._aggregates.add_uncommitted(name, ((a.ML_REASON, reason), (a.ML_RECEIVER, receiver)), 1.0)

    def refused(self, receiver: str, reason: str) -> None:
        """A request answered with a retryable code (``RefuseReason``)."""
        self._add(m.PROCESSOR_REQUESTS_REFUSED.name, receiver, reason)

    def failed(self, receiver: str, reason: str) -> None:
        """A request answered with a permanent request-level error (``FailReason``)."""
        self._add(m.PROCESSOR_REQUESTS_FAILED.name, receiver, reason)

    def auth_failure(self, receiver: str, reason: str) -> None:
        """A request or TLS handshake refused for its credentials (``AuthFailureReason``)."""
        self._add(m.PROCESSOR_AUTH_FAILURES.name, receiver, reason)

    def rejected_request(self, reason: str) -> None:
        """An unreadable or oversized request, counted as one rejected record (its record count is unknown)."""
        self._aggregates.add_uncommitted(m.PROCESSOR_RECORDS_REJECTED.name, ((a.ML_REASON, reason),), 1.0)


class Admitted:
    """One admitted request: its in-flight slot and memory reservation, released by :meth:`close` (idempotent)."""

    __slots__ = ("_admission", "_closed", "_reservation")

    def __init__(self, admission: Admission, reservation: Reservation | None) -> None:
        self._admission = admission
        self._reservation = reservation
        self._closed = False

    def grow(self, body_bytes: int) -> bool:
        """Reserve memory for ``body_bytes`` more body bytes; False: the memory limiter refuses."""
        return self._reservation is None or self._reservation.grow(body_bytes)

    def close(self) -> None:
        """Release the slot and the reservation."""
        if not self._closed:
            self._closed = True
            if self._reservation is not None:
                self._reservation.release()
            self._admission.leave()


class Ingest:
    """Shared by both receivers: admission, decode, submit; thread-safe."""

    def __init__(self, writer: Writer, admission: Admission, aggregates: Aggregates, clock: Callable[[], float],
                 limiter: MemoryLimiter | None = None) -> None:
        self.writer = writer
        self.admission = admission
        self.aggregates = aggregates
        self.clock = clock
        self.limiter = limiter
        self.counters = SelfCounters(aggregates)
        self._closing = threading.Event()

    @property
    def closing(self) -> bool:
        """True once the processor is shutting down: new requests are refused (retryable)."""
        return self._closing.is_set()

    def close(self) -> None:
        """Refuse every new request from now on (``shutting_down``)."""
        self._closing.set()

    def would_refuse(self) -> str | None:
        """The ``RefuseReason`` :meth:`admit` would give a request of unknown size right now (nothing is taken)."""
        if self._closing.is_set():
            return RefuseReason.SHUTTING_DOWN
        if self.admission.inflight >= self.admission.limit:
            return RefuseReason.OVERLOADED
        if self.limiter is not None and not self.limiter.would_admit():
            return RefuseReason.MEMORY_LIMIT
        return None

    def admit(self, receiver: str, body_bytes: int = 0, reservation: Reservation | None = None) -> Admitted | None:
        """Admit a request whose body (``body_bytes``, 0 when unknown) is not read yet; None: refused and counted.

        ``reservation``: memory the receiver reserved for the request before this call (gRPC reserves for reading
        the message before grpc reads it): resized to ``body_bytes``' share, or released when the request is refused.
        """
        reason = None
        if self._closing.is_set():
            reason = RefuseReason.SHUTTING_DOWN
        elif not self.admission.try_enter():
            reason = RefuseReason.OVERLOADED
        elif self.limiter is not None:
            if reservation is None:
                reservation = self.limiter.reserve(body_bytes)
            elif not reservation.resize(body_bytes):
                reservation.release()
                reservation = None
            if reservation is None:
                self.admission.leave()
                reason = RefuseReason.MEMORY_LIMIT
        if reason is not None:
            if reservation is not None:
                reservation.release()
            self.counters.refused(receiver, reason)
            return None
        return Admitted(self.admission, reservation)

    def decode(self, body: bytes) -> Decoded:
        """Decode a serialized ``ExportLogsServiceRequest``.

        Raises:
            google.protobuf.message.DecodeError: ``body`` is not one.
        """
        processor = self.writer.processor
        return decode_body(body, self.clock(), processor.wants_extras, processor.config.limits)

    def submit(self, decoded: Decoded) -> Future[StepResult]:
        """Queue for the group commit; the future resolves after the commit (or raises ``StoreUnavailable``)."""
        return self.writer.submit(decoded)

    def ingest(self, body: bytes) -> StepResult:
        """Decode and commit, waiting for the commit.

        Raises:
            google.protobuf.message.DecodeError: Undecodable (nothing was submitted).
            StoreUnavailable: The commit failed.
            concurrent.futures.TimeoutError: The commit did not finish within :data:`COMMIT_TIMEOUT_S`.
        """
        return self.submit(self.decode(body)).result(COMMIT_TIMEOUT_S)
