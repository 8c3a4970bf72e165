"""OTLP/HTTP receiver: ``POST /v1/logs`` (binary protobuf; identity, gzip; ``Content-Length`` or chunked).

An ASGI app served by :class:`otel_ml.processor.httpserver.HttpEndpoint`. Everything that can be decided from the
headers is decided before a byte of the body is read (and, for ``Expect: 100-continue`` senders, before they send
it): authentication, media type and encoding, declared size, shutdown, the in-flight bound and the memory limiter.
The body is then read with ``read_timeout`` for all of it, never buffering more than ``receiver.max_request_bytes``
of it (compressed or not, whatever the framing); a gzip body is decompressed as it arrives, into at most that many
bytes. The memory limiter reserves room for the body as it arrives.

Answers, as the collector's ``otlp`` receiver gives them (errors carry a ``google.rpc.Status`` protobuf body, as the
OTLP specification requires; messages are bounded to 512 bytes):

====================================================  ======  ==========================================
case                                                  status  counted
====================================================  ======  ==========================================
accepted (``ExportLogsServiceResponse``, partial)     200     records
no / wrong ``authorization: Bearer`` token            401     auth.failures{missing/invalid_credentials}
path other than ``/v1/logs`` (``/health``: GET 200)   404     requests.failed{not_found}
header block larger than 16 kB                        431     requests.failed{bad_request}
method other than POST                                405     requests.failed{method_not_allowed}
media type not protobuf, encoding not gzip/identity   415     requests.failed{unsupported_media_type}
declared or read size > ``max_request_bytes``         413     records.rejected{too_large}
undecodable protobuf or gzip, truncated gzip          400     records.rejected{decode_error}
body slower than ``read_timeout``                     408     requests.failed{read_timeout}
busy, memory limit, shutting down, store failure      503     requests.refused{...} (+ ``Retry-After``)
unexpected exception                                  500     requests.failed{internal_error}
====================================================  ======  ==========================================

Every error answer before the whole body was read closes the connection (no reading of the rest of a refused
body). Framing errors (bad ``Content-Length``, bad chunks, oversized headers) are answered 400 by the HTTP layer.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from concurrent import futures
from typing import Final

from google.protobuf.message import DecodeError
from google.rpc import code_pb2, status_pb2

from otel_ml.errors import OtelMLError
from otel_ml.processor.httpserver import MAX_HEADER_BYTES, Message, Receive, Scope, Send, headers_too_large
from otel_ml.processor.ingest import COMMIT_TIMEOUT_S, Admitted, Ingest, bounded, response
from otel_ml.processor.security import Authenticator
from otel_ml.processor.writer import StoreUnavailable
from otel_ml.semconv.attributes import FailReason, Receiver, RefuseReason, RejectReason

_logger = logging.getLogger(__name__)
LOGS_PATH: Final = "/v1/logs"
HEALTH_PATH: Final = "/health"
PROTOBUF: Final = b"application/x-protobuf"
_RECEIVER = Receiver.HTTP
_GRPC_CODE = {400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 404: code_pb2.NOT_FOUND,
              405: code_pb2.UNIMPLEMENTED, 408: code_pb2.DEADLINE_EXCEEDED, 413: code_pb2.RESOURCE_EXHAUSTED,
              415: code_pb2.INVALID_ARGUMENT, 431: code_pb2.INVALID_ARGUMENT, 500: code_pb2.INTERNAL,
              503: code_pb2.UNAVAILABLE}


class _Reply(OtelMLError):
    """Answer with ``status`` (a ``google.rpc.Status`` body) and close the connection."""

    def __init__(self, status: int, message: str, retry_after: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class _Disconnected(OtelMLError):
    """The client went away before the whole body arrived."""


class OtlpHttpApp:
    """The ASGI app (see the module docstring)."""

    def __init__(self, ingest: Ingest, *, max_request_bytes: int, retry_after: int, read_timeout: float,
                 auth: Authenticator | None = None, executor: futures.Executor | None = None) -> None:
        self._ingest = ingest
        self._counters = ingest.counters
        self._limit = max_request_bytes
        self._retry_after = str(retry_after).encode()
        self._read_timeout = read_timeout
        self._auth = auth
        self._executor = executor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = [False]

        async def tracked(message: Message) -> None:
            started[0] = True
            await send(message)

        try:
            await self._handle(scope, receive, tracked)
        except _Reply as reply:
            if not started[0]:
                await self._error(tracked, reply.status, reply.message, reply.retry_after)
        except MemoryError:
            self._counters.refused(_RECEIVER, RefuseReason.MEMORY_LIMIT)
            if not started[0]:
                await self._error(tracked, 503, "otel-ml processor out of memory; retry later", True)
        except Exception as exc:  # last resort: a correct answer, never a dropped connection
            _logger.exception("OTLP/HTTP request failed unexpectedly")
            self._counters.failed(_RECEIVER, FailReason.INTERNAL_ERROR)
            if not started[0]:
                await self._error(tracked, 500, f"internal error: {type(exc).__name__}: {exc}")

    async def _error(self, send: Send, status: int, message: str, retry_after: bool = False) -> None:
        body = status_pb2.Status(code=_GRPC_CODE.get(status, code_pb2.UNKNOWN),
                                 message=bounded(message)).SerializeToString()
        headers = [(b"content-type", PROTOBUF), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        if retry_after:
            headers.append((b"retry-after", self._retry_after))
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="otel-ml"'))
        if status == 405:
            headers.append((b"allow", b"POST"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _plain(self, send: Send, status: int, text: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode())]})
        await send({"type": "http.response.body", "body": text})

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if headers_too_large(scope):
            self._counters.failed(_RECEIVER, FailReason.BAD_REQUEST)
            raise _Reply(431, f"request header fields larger than {MAX_HEADER_BYTES} bytes")
        if path == HEALTH_PATH and method in ("GET", "HEAD"):
            await self._plain(send, 200, b"ok")
            return
        if path != LOGS_PATH:
            self._counters.failed(_RECEIVER, FailReason.NOT_FOUND)
            raise _Reply(404, f"not found: only POST {LOGS_PATH}")
        if method != "POST":
            self._counters.failed(_RECEIVER, FailReason.METHOD_NOT_ALLOWED)
            raise _Reply(405, f"method {method} not allowed: POST {LOGS_PATH}")
        headers: dict[bytes, bytes] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key, value)  # h11 lower-cases names; Content-Length duplicates already agree
        if self._auth is not None:
            reason = self._auth.check(headers.get(b"authorization"))
            if reason is not None:
                self._counters.auth_failure(_RECEIVER, reason)
                raise _Reply(401, f"{reason}: expected authorization: Bearer <token>")
        ctype = headers.get(b"content-type", PROTOBUF).split(b";", 1)[0].strip().lower()
        if ctype != PROTOBUF:
            self._counters.failed(_RECEIVER, FailReason.UNSUPPORTED_MEDIA_TYPE)
            raise _Reply(415, f"unsupported Content-Type {ctype.decode('latin-1')!r}: only application/x-protobuf")
        encoding = headers.get(b"content-encoding", b"").strip().lower()
        if encoding not in (b"", b"identity", b"gzip"):
            self._counters.failed(_RECEIVER, FailReason.UNSUPPORTED_MEDIA_TYPE)
            raise _Reply(415, f"unsupported Content-Encoding {encoding.decode('latin-1')!r}: gzip or identity")
        gzipped = encoding == b"gzip"
        declared = int(headers[b"content-length"]) if b"content-length" in headers else None
        if declared is not None and declared > self._limit:
            self._counters.rejected_request(RejectReason.TOO_LARGE)
            raise _Reply(413, f"request of {declared} bytes exceeds receiver.max_request_bytes ({self._limit})")
        # identity with a Content-Length: reserve for all of it now; otherwise as the (decompressed) bytes arrive
        admitted = self._ingest.admit(_RECEIVER, 0 if gzipped or declared is None else declared)
        if admitted is None:
            raise _Reply(503, "otel-ml processor is busy, low on memory or shutting down; retry later", True)
        try:
            await self._admitted(receive, send, admitted, gzipped, declared)
        finally:
            admitted.close()

    async def _admitted(self, receive: Receive, send: Send, admitted: Admitted, gzipped: bool,
                        declared: int | None) -> None:
        try:
            reserved = declared is not None and not gzipped
            body = await asyncio.wait_for(self._read(receive, admitted, gzipped, reserved), self._read_timeout)
        except TimeoutError:
            self._counters.failed(_RECEIVER, FailReason.READ_TIMEOUT)
            raise _Reply(408, f"body not received within receiver.http.read_timeout ({self._read_timeout:g}s)") \
                from None
        except _Disconnected:
            self._counters.failed(_RECEIVER, FailReason.CLIENT_DISCONNECTED)
            return
        try:
            # on the decode pool, never on the event loop: decoding inline (tried for bodies <= 1 MiB) halved the
            # end-to-end rate, as the loop could not read the next bodies meanwhile and the writer lost its groups
            decoded = await asyncio.get_running_loop().run_in_executor(self._executor, self._ingest.decode, body)
        except DecodeError as exc:
            self._counters.rejected_request(RejectReason.DECODE_ERROR)
            raise _Reply(400, f"undecodable ExportLogsServiceRequest: {exc}") from None
        del body
        commit = asyncio.shield(asyncio.wrap_future(self._ingest.submit(decoded)))
        try:
            result = await asyncio.wait_for(commit, COMMIT_TIMEOUT_S)
        except (StoreUnavailable, TimeoutError) as exc:
            self._counters.refused(_RECEIVER, RefuseReason.STORE_UNAVAILABLE)
            raise _Reply(503, f"store unavailable: {exc}", True) from None
        payload = response(result).SerializeToString()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", PROTOBUF), (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    async def _read(self, receive: Receive, admitted: Admitted, gzipped: bool, reserved: bool) -> bytes:
        """The whole body (decompressed), within the limits; raises :class:`_Reply` or :class:`_Disconnected`."""
        limit = self._limit
        parts: list[bytes] = []
        wire = 0
        inflater = _Gunzip(limit) if gzipped else None
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            data: bytes = message.get("body", b"")
            wire += len(data)
            if wire > limit:
                self._counters.rejected_request(RejectReason.TOO_LARGE)
                raise _Reply(413, f"request exceeds receiver.max_request_bytes ({limit})")
            if inflater is not None and data:
                try:
                    data = inflater.feed(data)
                except zlib.error as exc:
                    self._counters.rejected_request(RejectReason.DECODE_ERROR)
                    raise _Reply(400, f"undecodable gzip body: {exc}") from None
                except OverflowError:
                    self._counters.rejected_request(RejectReason.TOO_LARGE)
                    raise _Reply(413, f"decompressed request exceeds receiver.max_request_bytes ({limit})") from None
            if data:
                if not reserved and not admitted.grow(len(data)):
                    self._counters.refused(_RECEIVER, RefuseReason.MEMORY_LIMIT)
                    raise _Reply(503, "otel-ml processor low on memory; retry later", True)
                parts.append(data)
            if not message.get("more_body", False):
                break
        if inflater is not None and not inflater.complete:
            self._counters.rejected_request(RejectReason.DECODE_ERROR)
            raise _Reply(400, "truncated gzip body")
        return parts[0] if len(parts) == 1 else b"".join(parts)


class _Gunzip:
    """Incremental gzip decompression into at most ``limit`` bytes; concatenated members are read as gzip does."""

    def __init__(self, limit: int) -> None:
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._room = limit

    @property
    def complete(self) -> bool:
        """True when the input so far ends at the end of a gzip member."""
        return self._inflater.eof

    def feed(self, data: bytes) -> bytes:
        """Decompress more input.

        Raises:
            zlib.error: Not gzip, corrupt, or garbage after a member.
            OverflowError: The output would exceed the limit.
        """
        out = []
        while True:
            chunk = self._inflater.decompress(data, self._room + 1)
            if len(chunk) > self._room or self._inflater.unconsumed_tail:
                raise OverflowError
            self._room -= len(chunk)
            out.append(chunk)
            if self._inflater.eof and self._inflater.unused_data:
                data = self._inflater.unused_data
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                continue
            return out[0] if len(out) == 1 else b"".join(out)
