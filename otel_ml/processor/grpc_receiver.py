"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.logs.v1.LogsService/Export``.

grpc looks the method handler up when a call starts, before its message is read: the servicer's handler checks the
call's metadata there (bearer token, shutdown, in-flight bound, memory limiter) and answers a refused call with a
stream-unary handler that never reads the message (grpc's flow control holds it at the sender). An accepted call gets
the unary handler with no deserializer: the servicer parses the raw bytes itself, so both the size check and the
decode errors are its own and counted. (A stream-unary ``Export`` for every call would do the same but cost 5-13 %
more CPU per request, measured in process.)

Answers (what the collector's ``otlp_grpc`` / ``load_balancing`` exporters expect):

* ``OK`` with ``partial_success`` when some records were malformed (the others are committed);
* ``UNAUTHENTICATED``: ``receiver.grpc.auth`` is set and the call has no or a wrong ``authorization`` token;
* ``UNAVAILABLE`` + ``google.rpc.RetryInfo`` (``receiver.retry_after``): refused before reading (overloaded,
  memory limit, shutting down) or the commit failed; retryable, nothing acknowledged;
* ``INVALID_ARGUMENT``: undecodable; ``RESOURCE_EXHAUSTED`` (no RetryInfo: permanent): larger than
  ``receiver.max_request_bytes`` (beyond :data:`GRPC_HARD_LIMIT_FACTOR` times that, grpc refuses by itself, the one
  uncounted case);
* ``INTERNAL`` with a bounded message, counted ``internal_error``: anything unexpected. No exception escapes to grpc,
  which would answer ``UNKNOWN``.

Memory: grpc reads the whole message before ``Export`` runs, and reading one costs about :data:`GRPC_READ_EXPANSION`
times its size (grpc core's buffer, the bytearray cygrpc copies it into, the final bytes), none of it visible to
the request's own code. So the handler lookup reserves that much for a message of ``receiver.max_request_bytes``
with the memory limiter (or refuses the call, ``memory_limit``, unread) and hands the reservation to ``Export``,
which resizes it to the body's share (``EXPANSION`` times its size). A call that never reaches ``Export``
(cancelled, or beyond grpc's own limit) gives it back when grpc drops its handler. Not covered: a message between
``max_request_bytes`` and grpc's own limit (rejected ``too_large`` once read) is read with the reservation of one
of ``max_request_bytes``.

TLS and mTLS come from ``receiver.grpc.tls`` (:func:`otel_ml.processor.security.grpc_credentials`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent import futures
from typing import Any, Final

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from otel_ml.errors import OtelMLError
from otel_ml.processor.config import ProcessorConfig
from otel_ml.processor.ingest import COMMIT_TIMEOUT_S, Ingest, bounded, response
from otel_ml.processor.memory import Reservation
from otel_ml.processor.security import Authenticator, check_tls_files, grpc_credentials
from otel_ml.processor.writer import StoreUnavailable
from otel_ml.semconv.attributes import FailReason, Receiver, RefuseReason, RejectReason

_logger = logging.getLogger(__name__)
GRPC_HARD_LIMIT_FACTOR: Final = 4
"""grpc's own receive limit, as a multiple of ``receiver.max_request_bytes`` (see the module docstring)."""
GRPC_READ_EXPANSION: Final = 3
"""Peak bytes grpc allocates per message byte while reading a message, before the handler runs (measured with grpc
1.85, 14 MiB message: +32 to +43 MiB RSS; grpc core's buffer, cygrpc's bytearray and the bytes made from it)."""
LOGS_SERVICE: Final = "opentelemetry.proto.collector.logs.v1.LogsService"
GRPC_HANDSHAKE_TIMEOUT_MS: Final = 10_000
"""Time a new connection has to complete its TLS and HTTP/2 handshakes."""
_EMPTY = ExportLogsServiceResponse()
_RECEIVER = Receiver.GRPC


class _Answered(OtelMLError):
    """The call was answered with a non-OK status (already set on the context)."""


class LogsServicer:
    """``LogsService``: :meth:`handler` checks a call before its message is read, ``Export`` takes the raw bytes."""

    def __init__(self, ingest: Ingest, max_request_bytes: int, retry_after: int,
                 auth: Authenticator | None = None) -> None:
        self._ingest = ingest
        self._counters = ingest.counters
        self._limit = max_request_bytes
        self._auth = auth
        self._retry_info = error_details_pb2.RetryInfo(retry_delay=Duration(seconds=retry_after))
        self._export = grpc.unary_unary_rpc_method_handler(
            self.Export, request_deserializer=None, response_serializer=ExportLogsServiceResponse.SerializeToString)
        self._refusals: dict[tuple[grpc.StatusCode, str, bool], grpc.RpcMethodHandler] = {}

    def _fail(self, context: grpc.ServicerContext, code: grpc.StatusCode, message: str,
              retryable: bool = False) -> _Answered:
        message = bounded(message)
        context.set_code(code)
        context.set_details(message)
        if retryable:  # RetryInfo tells OTLP exporters when to retry (the collector's and the SDKs' honour it)
            status = status_pb2.Status(code=code.value[0], message=message)
            status.details.add().Pack(self._retry_info)
            context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
        return _Answered()

    def precheck(self, metadata: Any) -> tuple[grpc.StatusCode, str, bool] | None:
        """Refusal of a call from its metadata alone (auth, shutdown, in-flight bound, memory), counted; None: go on.

        Runs when the call starts, before its message is read. A call that passes takes its in-flight slot only in
        ``Export`` (a slot taken here would leak if the call were cancelled in between), so a race can still refuse
        it there, after the read; its memory for the read is reserved by :meth:`accepted`.
        """
        if self._auth is not None:
            token = None
            for key, value in metadata or ():
                if key == "authorization":
                    token = value
                    break
            reason = self._auth.check(token)
            if reason is not None:
                self._counters.auth_failure(_RECEIVER, reason)
                return grpc.StatusCode.UNAUTHENTICATED, f"{reason}: expected authorization: Bearer <token>", False
        reason = self._ingest.would_refuse()
        if reason is not None:
            self._counters.refused(_RECEIVER, reason)
            return grpc.StatusCode.UNAVAILABLE, f"otel-ml processor refused the request ({reason}); retry later", True
        return None

    def refusal(self, code: grpc.StatusCode, message: str, retryable: bool) -> grpc.RpcMethodHandler:
        """A handler answering ``code`` without reading the request (stream-unary: the message stays unread)."""
        key = (code, message, retryable)
        handler = self._refusals.get(key)
        if handler is None:
            def refuse(requests: Iterator[bytes], context: grpc.ServicerContext) -> ExportLogsServiceResponse:
                self._fail(context, code, message, retryable)
                return _EMPTY

            handler = grpc.stream_unary_rpc_method_handler(
                refuse, request_deserializer=None, response_serializer=ExportLogsServiceResponse.SerializeToString)
            if len(self._refusals) < 64:
                self._refusals[key] = handler
        return handler

    def accepted(self) -> grpc.RpcMethodHandler:
        """The handler of a call that passed :meth:`precheck`: with a reservation for reading its message when the
        memory limiter is on (see the module docstring), or a refusal (``memory_limit``) when there is no room."""
        limiter = self._ingest.limiter
        if limiter is None:
            return self._export
        reservation = limiter.reserve_bytes(GRPC_READ_EXPANSION * self._limit)
        if reservation is None:
            self._counters.refused(_RECEIVER, RefuseReason.MEMORY_LIMIT)
            return self.refusal(grpc.StatusCode.UNAVAILABLE, "otel-ml processor refused the request "
                                f"({RefuseReason.MEMORY_LIMIT}); retry later", True)
        try:
            return grpc.unary_unary_rpc_method_handler(
                _ReservedExport(self, reservation), request_deserializer=None,
                response_serializer=ExportLogsServiceResponse.SerializeToString)
        except BaseException:
            reservation.release()
            raise

    def Export(self, body: bytes, context: grpc.ServicerContext,
               reservation: Reservation | None = None) -> ExportLogsServiceResponse:
        try:
            return self._admit(body, context, reservation)
        except _Answered:
            return _EMPTY
        except MemoryError:
            self._counters.refused(_RECEIVER, RefuseReason.MEMORY_LIMIT)
            self._fail(context, grpc.StatusCode.UNAVAILABLE, "otel-ml processor out of memory; retry later", True)
            return _EMPTY
        except Exception as exc:  # last resort: never UNKNOWN
            _logger.exception("OTLP/gRPC Export failed unexpectedly")
            self._counters.failed(_RECEIVER, FailReason.INTERNAL_ERROR)
            self._fail(context, grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
            return _EMPTY

    def _admit(self, body: bytes, context: grpc.ServicerContext,
               reservation: Reservation | None) -> ExportLogsServiceResponse:
        admitted = self._ingest.admit(_RECEIVER, len(body), reservation)
        if admitted is None:
            raise self._fail(context, grpc.StatusCode.UNAVAILABLE,
                             "otel-ml processor is busy, low on memory or shutting down; retry later", True)
        try:
            return self._admitted(body, context)
        finally:
            admitted.close()

    def _admitted(self, body: bytes, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        if len(body) > self._limit:
            self._counters.rejected_request(RejectReason.TOO_LARGE)
            raise self._fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"request of {len(body)} bytes exceeds receiver.max_request_bytes ({self._limit})")
        try:
            decoded = self._ingest.decode(body)
        except DecodeError as exc:
            self._counters.rejected_request(RejectReason.DECODE_ERROR)
            raise self._fail(context, grpc.StatusCode.INVALID_ARGUMENT,
                             f"undecodable ExportLogsServiceRequest: {exc}") from None
        del body
        try:
            result = self._ingest.submit(decoded).result(COMMIT_TIMEOUT_S)
        except (StoreUnavailable, futures.TimeoutError) as exc:
            self._counters.refused(_RECEIVER, RefuseReason.STORE_UNAVAILABLE)
            raise self._fail(context, grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}", True) from None
        return response(result)

    def handler(self) -> grpc.GenericRpcHandler:
        """The service handler: pre-read checks, then raw request bytes in, protobuf response out."""
        return _Handler(self)


class _ReservedExport:
    """``Export`` of one call, holding the memory reserved for reading its message; a call grpc drops without
    running it (cancelled before its message arrived, message beyond grpc's limit) releases it when the handler is
    freed."""

    __slots__ = ("_reservation", "_servicer")

    def __init__(self, servicer: LogsServicer, reservation: Reservation) -> None:
        self._servicer = servicer
        self._reservation = reservation

    def __call__(self, body: bytes, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        return self._servicer.Export(body, context, self._reservation)

    def __del__(self) -> None:
        self._reservation.release_later()


class _Handler(grpc.GenericRpcHandler):
    """Looked up by grpc when a call starts, before its message is read: the place to refuse it cheaply."""

    _METHOD = f"/{LOGS_SERVICE}/Export"

    def __init__(self, servicer: LogsServicer) -> None:
        self._servicer = servicer

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        if handler_call_details.method != self._METHOD:  # type: ignore[attr-defined]
            return None
        try:
            refusal = self._servicer.precheck(handler_call_details.invocation_metadata)  # type: ignore[attr-defined]
        except Exception:  # never let a check failure become UNKNOWN: let Export decide
            _logger.exception("OTLP/gRPC pre-read check failed")
            refusal = None
        if refusal is not None:
            return self._servicer.refusal(*refusal)
        try:
            return self._servicer.accepted()
        except Exception:  # as above: Export reserves then
            _logger.exception("OTLP/gRPC memory reservation failed")
            return self._servicer._export


def grpc_server(ingest: Ingest, config: ProcessorConfig) -> tuple[grpc.Server, int]:
    """Start the gRPC receiver; returns the server and its bound port.

    Raises:
        OSError: The endpoint cannot be bound, or a TLS file cannot be read.
    """
    rc = config.receiver
    assert rc.grpc is not None
    limit = rc.max_inflight_requests
    max_bytes = rc.max_request_bytes
    # Calls beyond the in-flight bound are answered UNAVAILABLE by the servicer before their message is read, so
    # they are cheap: keep enough workers free for that, and let grpc queue a generous number of calls (beyond
    # maximum_concurrent_rpcs grpc itself answers RESOURCE_EXHAUSTED, which senders do not retry).
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", min(GRPC_HARD_LIMIT_FACTOR * max_bytes, 2**31 - 1)),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
        # a connection cap and a handshake deadline: beyond the cap grpc core closes new connections at once, and a
        # client that connects but never completes its TLS / HTTP/2 handshake is cut off (slowloris for gRPC)
        ("grpc.max_allowed_incoming_connections", rc.grpc.max_connections),
        ("grpc.server_handshake_timeout_ms", GRPC_HANDSHAKE_TIMEOUT_MS),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=limit + 8, thread_name_prefix="otel-ml-grpc"),
                         maximum_concurrent_rpcs=4 * limit + 64, options=options)
    auth = Authenticator(rc.grpc.auth) if rc.grpc.auth is not None else None
    server.add_generic_rpc_handlers((LogsServicer(ingest, max_bytes, rc.retry_after, auth).handler(),))
    endpoint = rc.grpc.endpoint
    try:
        if rc.grpc.tls is not None:
            check_tls_files(rc.grpc.tls, "receiver.grpc.tls")  # grpc itself would only say "Failed to bind"
            port = server.add_secure_port(endpoint, grpc_credentials(rc.grpc.tls))
        else:
            port = server.add_insecure_port(endpoint)
    except RuntimeError as exc:  # grpc's "Failed to bind to address"
        raise OSError(f"cannot bind the gRPC receiver to {endpoint}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind the gRPC receiver to {endpoint}")
    server.start()
    return server, port
