"""An in-process OTLP receiver for tests: gRPC (LogsService + MetricsService) and OTLP/HTTP (/v1/logs, /v1/metrics).

Uses the service stubs and messages of ``opentelemetry-proto``; records every decoded request with its transport
and headers. Behaviour can be changed while running: fail the next requests with a retryable (or not) status, or
stall every request until released (a slow or hung endpoint).

Usage::

    with OtlpSink() as sink:
        otel_ml.configure(endpoint=sink.http_endpoint)             # or sink.grpc_endpoint, protocol="grpc"
        ...
        records = sink.wait_for_log_records(3)
        assert records[0].attributes["ml.model.name"] == "fraud"
"""

from __future__ import annotations

import gzip
import ssl
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc

from tests.support.procs import free_port

LOGS = "logs"
METRICS = "metrics"


def any_value(value: Any) -> Any:
    """A Python value from an OTLP ``AnyValue``."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind)


def attributes(kvs: Any) -> dict[str, Any]:
    """A dict from repeated ``KeyValue`` (fails on duplicate keys: OTLP forbids them)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        assert kv.key not in out, f"duplicate attribute {kv.key}"
        out[kv.key] = any_value(kv.value)
    return out


@dataclass
class Received:
    """One request as received."""

    signal: str
    transport: str
    headers: dict[str, str]
    message: Any
    size: int


@dataclass
class LogRecordView:
    """One decoded log record with its resource and scope."""

    resource: dict[str, Any]
    scope_name: str
    scope_version: str
    scope_attributes: dict[str, Any]
    record: Any
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Failure:
    remaining: int
    http_status: int
    grpc_code: grpc.StatusCode
    retry_after: str | None


class OtlpSink:
    """The receiver. Start with ``start()`` or a ``with`` block; both servers listen on 127.0.0.1 free ports.

    Args:
        grpc_enabled: Run the gRPC server.
        http_enabled: Run the HTTP server.
        tls: ``(certificate PEM path, key PEM path)``: serve both over TLS (the endpoints become ``https://``).
    """

    def __init__(self, *, grpc_enabled: bool = True, http_enabled: bool = True,
                 tls: tuple[str, str] | None = None) -> None:
        self.requests: list[Received] = []
        self._lock = threading.Condition()
        self._failure: _Failure | None = None
        self._release = threading.Event()
        self._release.set()
        self.stalled_requests = 0
        self._grpc_enabled = grpc_enabled
        self._http_enabled = http_enabled
        self._grpc_server: Any = None
        self._http_server: ThreadingHTTPServer | None = None
        self.grpc_port = 0
        self.http_port = 0
        self._tls = tls

    # --- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> OtlpSink:
        """Start the servers."""
        if self._grpc_enabled:
            self._grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
            logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_LogsServicer(self), self._grpc_server)
            metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsServicer(self), self._grpc_server)
            address = f"127.0.0.1:{free_port()}"
            if self._tls is not None:
                with open(self._tls[0], "rb") as c, open(self._tls[1], "rb") as k:
                    creds = grpc.ssl_server_credentials([(k.read(), c.read())])
                self.grpc_port = self._grpc_server.add_secure_port(address, creds)
            else:
                self.grpc_port = self._grpc_server.add_insecure_port(address)
            self._grpc_server.start()
        if self._http_enabled:
            sink = self

            class Handler(_HttpHandler):
                owner = sink

            self._http_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            self._http_server.daemon_threads = True
            if self._tls is not None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(*self._tls)
                self._http_server.socket = context.wrap_socket(self._http_server.socket, server_side=True)
            self.http_port = self._http_server.server_address[1]
            threading.Thread(target=self._http_server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop the servers (releasing any stalled request first)."""
        self.release()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace=0.5).wait()
        if self._http_server is not None:
            self._http_server.shutdown()
            self._http_server.server_close()

    def __enter__(self) -> OtlpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def grpc_endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` of the gRPC server."""
        return f"{self._scheme}://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` of the HTTP server (paths ``/v1/logs``, ``/v1/metrics``)."""
        return f"{self._scheme}://127.0.0.1:{self.http_port}"

    @property
    def _scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    # --- behaviour ---------------------------------------------------------------------------------------------------
    def fail_next(self, n: int, *, http_status: int = 503, grpc_code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
                  retry_after: str | None = None) -> None:
        """Answer the next ``n`` requests with an error (and ``Retry-After`` on HTTP when given)."""
        with self._lock:
            self._failure = _Failure(n, http_status, grpc_code, retry_after)

    def stall(self) -> None:
        """Hold every request until :meth:`release` (a hung endpoint)."""
        self._release.clear()

    def release(self) -> None:
        """Let stalled requests continue."""
        self._release.set()

    def _admit(self) -> _Failure | None:
        if not self._release.is_set():
            with self._lock:
                self.stalled_requests += 1
            self._release.wait(60)
        with self._lock:
            f = self._failure
            if f is not None and f.remaining > 0:
                f.remaining -= 1
                return f
        return None

    def _record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)
            self._lock.notify_all()

    # --- reading -----------------------------------------------------------------------------------------------------
    def messages(self, signal: str) -> list[Any]:
        """Decoded requests of ``signal`` (``logs`` or ``metrics``) so far."""
        with self._lock:
            return [r.message for r in self.requests if r.signal == signal]

    def log_records(self) -> list[LogRecordView]:
        """Every log record received so far, in arrival order."""
        out = []
        for req in self.messages(LOGS):
            for rl in req.resource_logs:
                res = attributes(rl.resource.attributes)
                for sl in rl.scope_logs:
                    scope_attrs = attributes(sl.scope.attributes)
                    for rec in sl.log_records:
                        out.append(LogRecordView(res, sl.scope.name, sl.scope.version, scope_attrs, rec,
                                                 attributes(rec.attributes)))
        return out

    def wait_for_log_records(self, n: int, timeout: float = 20.0) -> list[LogRecordView]:
        """Wait until at least ``n`` log records arrived; return all of them."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.log_records()
            if len(records) >= n or time.monotonic() > deadline:
                if len(records) < n:
                    raise TimeoutError(f"got {len(records)} of {n} log records within {timeout}s")
                return records
            with self._lock:
                self._lock.wait(0.05)

    def metric_points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """Data points of metric ``name`` in the latest metrics request that has it: ``(attributes, point)``."""
        for req in reversed(self.messages(METRICS)):
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        if metric.name == name:
                            kind = metric.WhichOneof("data")
                            return [(attributes(dp.attributes), dp) for dp in getattr(metric, kind).data_points]
        return []


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, owner: OtlpSink) -> None:
        self.owner = owner

    def Export(self, request: Any, context: Any) -> Any:
        return _grpc_export(self.owner, LOGS, request, context, logs_service_pb2.ExportLogsServiceResponse())


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, owner: OtlpSink) -> None:
        self.owner = owner

    def Export(self, request: Any, context: Any) -> Any:
        return _grpc_export(self.owner, METRICS, request, context, metrics_service_pb2.ExportMetricsServiceResponse())


def _grpc_export(owner: OtlpSink, signal: str, request: Any, context: Any, response: Any) -> Any:
    failure = owner._admit()
    if failure is not None:
        context.abort(failure.grpc_code, "injected failure")
    headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
    owner._record(Received(signal, "grpc", headers, request, request.ByteSize()))
    return response


class _HttpHandler(BaseHTTPRequestHandler):
    owner: OtlpSink
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        paths: dict[str, tuple[str, type[Message], type[Message]]] = {
            "/v1/logs": (LOGS, logs_service_pb2.ExportLogsServiceRequest, logs_service_pb2.ExportLogsServiceResponse),
            "/v1/metrics": (METRICS, metrics_service_pb2.ExportMetricsServiceRequest,
                            metrics_service_pb2.ExportMetricsServiceResponse)}
        if self.path not in paths:
            self._reply(404, b"")
            return
        failure = self.owner._admit()
        if failure is not None:
            extra = {"Retry-After": failure.retry_after} if failure.retry_after is not None else {}
            self._reply(failure.http_status, b"", extra)
            return
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self._reply(415, b"")
            return
        signal, request_cls, response_cls = paths[self.path]
        message = request_cls.FromString(body)
        self.owner._record(Received(signal, "http", {k.lower(): v for k, v in self.headers.items()}, message,
                                    len(body)))
        self._reply(200, response_cls().SerializeToString())

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
