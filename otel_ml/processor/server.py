"""OTLP receivers: gRPC ``LogsService`` and OTLP/HTTP ``POST /v1/logs`` (protobuf, gzip), plus the processor app.

Answers (what the collector's ``otlp``/``otlphttp``/``load_balancing`` exporters expect):

* success: ``ExportLogsServiceResponse``, with ``partial_success`` (rejected count + first reason) when some records
  were malformed; the good records of the same request are committed;
* overload (more than ``receiver.max_inflight_requests`` requests in flight): gRPC ``UNAVAILABLE`` / HTTP 503 with
  ``Retry-After`` — retryable, so the sender's queue keeps the data;
* store failure (commit failed): gRPC ``UNAVAILABLE`` / HTTP 503 + ``Retry-After`` (retryable);
* undecodable payload: gRPC ``INVALID_ARGUMENT`` / HTTP 400; larger than ``receiver.max_request_bytes``
  (decompressed): gRPC ``RESOURCE_EXHAUSTED`` / HTTP 413 — permanent, counted under
  ``ml.processor.records.rejected{ml.reason=decode_error|too_large}`` as one record each (the record count of an
  unreadable request is unknown). The gRPC method receives raw bytes (the servicer parses them), so both checks are
  the processor's own and counted; grpc's ``max_receive_message_length`` is set to
  :data:`GRPC_HARD_LIMIT_FACTOR` times the configured limit as a memory backstop: a message beyond that is refused
  by grpc itself (``RESOURCE_EXHAUSTED`` too) and is the one case not counted.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)

from otel_ml.processor import _native
from otel_ml.processor.aggregates import Aggregates
from otel_ml.processor.config import ProcessorConfig
from otel_ml.processor.decode import decode_body
from otel_ml.processor.export import MetricsOutput, publish_final_totals
from otel_ml.processor.stage import Stage, load_stages
from otel_ml.processor.step import Processor, StepResult
from otel_ml.processor.store import BaseJoinStore, open_store
from otel_ml.processor.writer import Admission, StoreUnavailable, Writer
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import RejectReason

_logger = logging.getLogger(__name__)
COMMIT_TIMEOUT_S = 30.0
GRPC_HARD_LIMIT_FACTOR = 4
"""grpc's own receive limit, as a multiple of ``receiver.max_request_bytes`` (see the module docstring)."""
_LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"


class Ingest:
    """Shared by both receivers: admission, decode, submit, wait for the commit."""

    def __init__(self, writer: Writer, admission: Admission, aggregates: Aggregates,
                 clock: Callable[[], float]) -> None:
        self.writer = writer
        self.admission = admission
        self.aggregates = aggregates
        self.clock = clock

    def refused(self) -> None:
        """Count a request refused for overload."""
        self.aggregates.add_uncommitted(m.PROCESSOR_REQUESTS_REFUSED.name, (), 1.0)

    def rejected_request(self, reason: str) -> None:
        """Count an unreadable request."""
        self.aggregates.add_uncommitted(m.PROCESSOR_RECORDS_REJECTED.name, ((a.ML_REASON, reason),), 1.0)

    def ingest(self, body: bytes) -> StepResult:
        """Decode a serialized request and commit it.

        Raises:
            DecodeError: ``body`` is not an ``ExportLogsServiceRequest`` (nothing was submitted).
            StoreUnavailable: The commit failed.
        """
        processor = self.writer.processor
        decoded = decode_body(body, self.clock(), processor.wants_extras, processor.config.limits)
        return self.writer.submit(decoded).result(COMMIT_TIMEOUT_S)


def response(result: StepResult) -> ExportLogsServiceResponse:
    """OTLP response (``partial_success`` only when records were rejected)."""
    if not result.rejected:
        return ExportLogsServiceResponse()
    return ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
        rejected_log_records=result.rejected, error_message=result.error_message))


class LogsServicer:
    """gRPC ``opentelemetry.proto.collector.logs.v1.LogsService``; ``Export`` takes the serialized request."""

    def __init__(self, ingest: Ingest, max_request_bytes: int) -> None:
        self._ingest = ingest
        self._limit = max_request_bytes

    def Export(self, body: bytes, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        if not self._ingest.admission.try_enter():
            self._ingest.refused()
            context.abort(grpc.StatusCode.UNAVAILABLE, "otel-ml processor overloaded; retry later")
        try:
            if len(body) > self._limit:
                self._ingest.rejected_request(RejectReason.TOO_LARGE)
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"request of {len(body)} bytes exceeds receiver.max_request_bytes ({self._limit})")
            try:
                result = self._ingest.ingest(body)
            except DecodeError as exc:
                self._ingest.rejected_request(RejectReason.DECODE_ERROR)
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable ExportLogsServiceRequest: {exc}")
            return response(result)
        except (StoreUnavailable, futures.TimeoutError) as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"store unavailable: {exc}")
            raise  # unreachable: abort raises
        finally:
            self._ingest.admission.leave()

    def handler(self) -> grpc.GenericRpcHandler:
        """The service handler: raw request bytes in (no grpc-side parsing), protobuf response out."""
        method = grpc.unary_unary_rpc_method_handler(
            self.Export, request_deserializer=None, response_serializer=ExportLogsServiceResponse.SerializeToString)
        return grpc.method_handlers_generic_handler(_LOGS_SERVICE, {"Export": method})


def grpc_server(ingest: Ingest, endpoint: str, config: ProcessorConfig) -> tuple[grpc.Server, int]:
    """Start the gRPC receiver; returns the server and its bound port."""
    # more workers than admitted requests, so an overloaded processor still has a thread to answer UNAVAILABLE;
    # beyond maximum_concurrent_rpcs grpc itself answers RESOURCE_EXHAUSTED (nothing queues without bound)
    limit = config.receiver.max_inflight_requests
    max_bytes = config.receiver.max_request_bytes
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=limit + 4, thread_name_prefix="otel-ml-grpc"),
        maximum_concurrent_rpcs=2 * limit + 8,
        options=[("grpc.max_receive_message_length", min(GRPC_HARD_LIMIT_FACTOR * max_bytes, 2**31 - 1)),
                 ("grpc.max_send_message_length", 4 * 1024 * 1024)],
    )
    server.add_generic_rpc_handlers((LogsServicer(ingest, max_bytes).handler(),))
    port = server.add_insecure_port(endpoint)
    if port == 0:
        raise OSError(f"cannot bind the gRPC receiver to {endpoint}")
    server.start()
    return server, port


def _gunzip(body: bytes, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(body, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise OverflowError
    return out


def http_server(ingest: Ingest, endpoint: str, config: ProcessorConfig) -> tuple[ThreadingHTTPServer, int]:
    """Start the OTLP/HTTP receiver on a daemon thread; returns the server and its bound port."""
    limit = config.receiver.max_request_bytes
    retry_after = str(config.receiver.retry_after)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "otel-ml-processor"

        def log_message(self, format: str, *args: Any) -> None:
            _logger.debug("http: %s", format % args)

        def _reply(self, code: int, body: bytes = b"", ctype: str = "application/x-protobuf",
                   headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/health":
                self._reply(200, b"ok", "text/plain")
            else:
                self._reply(404, b"not found", "text/plain")

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != "/v1/logs":
                self._reply(404, b"only POST /v1/logs", "text/plain")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > limit:
                ingest.rejected_request(RejectReason.TOO_LARGE)
                self.close_connection = True
                self._reply(413, b"request too large", "text/plain")
                return
            body = self.rfile.read(length)
            ctype = (self.headers.get("Content-Type") or "application/x-protobuf").split(";")[0].strip()
            if ctype != "application/x-protobuf":
                self._reply(415, b"only application/x-protobuf is supported", "text/plain")
                return
            if not ingest.admission.try_enter():
                ingest.refused()
                self._reply(503, b"overloaded", "text/plain", {"Retry-After": retry_after})
                return
            try:
                if (self.headers.get("Content-Encoding") or "").lower() == "gzip":
                    body = _gunzip(body, limit)
                result = ingest.ingest(body)
            except OverflowError:
                ingest.rejected_request(RejectReason.TOO_LARGE)
                self._reply(413, b"request too large", "text/plain")
            except (DecodeError, zlib.error, EOFError):
                ingest.rejected_request(RejectReason.DECODE_ERROR)
                self._reply(400, b"cannot decode ExportLogsServiceRequest", "text/plain")
            except (StoreUnavailable, futures.TimeoutError):
                self._reply(503, b"store unavailable", "text/plain", {"Retry-After": retry_after})
            else:
                self._reply(200, response(result).SerializeToString())
            finally:
                ingest.admission.leave()

    host, port = endpoint.rsplit(":", 1)
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="otel-ml-http", daemon=True).start()
    return server, int(server.server_address[1])


class ProcessorApp:
    """The whole processor: store, stages, processor step (``pipeline``), writer, metric output and receivers."""

    def __init__(self, config: ProcessorConfig, clock: Callable[[], float] = time.time,
                 stages: list[Stage] | None = None, store: BaseJoinStore | None = None) -> None:
        self.config = config
        self.clock = clock
        self.store = store if store is not None else open_store(config.store, config.resolved_instance_id())
        self.pipeline = Processor(config, self.store, load_stages(config, clock) if stages is None else stages, clock)
        self.admission = Admission(config.receiver.max_inflight_requests)
        self.writer = Writer(self.pipeline)
        self.output = MetricsOutput(config, self.pipeline.aggregates,
                                    live={m.PROCESSOR_QUEUE_DEPTH.name: lambda: float(self.admission.inflight)})
        self.ingest = Ingest(self.writer, self.admission, self.pipeline.aggregates, clock)
        self.grpc: grpc.Server | None = None
        self.http: ThreadingHTTPServer | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.adopter: Any = None

    def start(self) -> ProcessorApp:
        """Start the writer, the receivers and (shared store) the publisher of gone replicas' totals."""
        self.writer.start()
        make_adopter = getattr(self.store, "adopter", None)
        if make_adopter is not None and self.config.metrics.otlp is not None:
            self.adopter = make_adopter(self.config.store.replica_timeout,
                                        lambda instance, totals: publish_final_totals(self.config, instance, totals))
            self.adopter.start()
        _logger.log(logging.WARNING if _native.degraded else logging.INFO, "decoding with the %s", _native.status)
        rc = self.config.receiver
        if rc.grpc_endpoint:
            self.grpc, self.grpc_port = grpc_server(self.ingest, rc.grpc_endpoint, self.config)
            _logger.info("OTLP/gRPC receiver listening on port %s", self.grpc_port)
        if rc.http_endpoint:
            self.http, self.http_port = http_server(self.ingest, rc.http_endpoint, self.config)
            _logger.info("OTLP/HTTP receiver listening on port %s", self.http_port)
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stop receiving, commit what is in flight, export a last time, close the store."""
        if self.grpc is not None:
            self.grpc.stop(grace).wait(grace + 1)
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        self.writer.stop()
        if self.adopter is not None:
            self.adopter.stop()
        try:
            self.output.shutdown()
        except Exception:
            _logger.exception("final metric export failed")
        self.pipeline.close()
