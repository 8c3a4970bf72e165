"""The collector stack of the integration tests: the OCB-built collector running the shipped configs, otel-ml
processor replicas, an OTLP/HTTP log sink standing in for the user's log backend, and an application that sends
OTLP logs. Every part is a real process or a real socket on loopback; ports are free ports chosen per test.

The collector always runs the files in ``collector-config/`` unmodified: the tests only set the ``OTEL_ML_*``
environment variables the files read (addresses, queue directory, short intervals).
"""

from __future__ import annotations

import gzip
import http.server
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from prometheus_client.parser import text_string_to_metric_families

from otel_ml.semconv import events
from tests.support.procs import (
    ROOT,
    ManagedProcess,
    Prometheus,
    collector_binary,
    free_port,
    http_ok,
    processor_command,
    tcp_open,
    wait_until,
)

CONFIG_DIR = ROOT / "collector-config"
GATEWAY = CONFIG_DIR / "gateway.yaml"
SCALEOUT_STATIC = CONFIG_DIR / "scaleout-static.yaml"
SCALEOUT_DNS = CONFIG_DIR / "scaleout-dns.yaml"
SCALEOUT_ROUNDROBIN = CONFIG_DIR / "scaleout-roundrobin.yaml"
ADD_OTEL_ML = CONFIG_DIR / "add-otel-ml.yaml"
PROCESSOR_TLS = CONFIG_DIR / "processor-tls.yaml"
EXISTING = CONFIG_DIR / "examples" / "existing-collector.yaml"
SHIPPED_CONFIGS: dict[str, tuple[Path, ...]] = {
    "gateway": (GATEWAY,),
    "gateway+scaleout-static": (GATEWAY, SCALEOUT_STATIC),
    "gateway+scaleout-dns": (GATEWAY, SCALEOUT_DNS),
    "gateway+scaleout-roundrobin": (GATEWAY, SCALEOUT_ROUNDROBIN),
    "existing": (EXISTING,),
    "existing+add-otel-ml": (EXISTING, ADD_OTEL_ML),
    "gateway+processor-tls": (GATEWAY, PROCESSOR_TLS),
}
"""Every shipped configuration, as the list of files given to ``--config`` (overlays are merged in order)."""

ML_EXPORTER = "otlp_grpc/otel_ml"
LB_EXPORTER = "load_balancing/otel_ml"


# --- parsing Prometheus text -----------------------------------------------------------------------------------------
def scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text endpoint as ``(name, labels, value)``."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    return [(s.name, dict(s.labels), float(s.value))
            for fam in text_string_to_metric_families(text) for s in fam.samples]


def sample_sum(samples: Iterable[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` (or ``name_total``) whose labels include ``labels``."""
    names = {name, f"{name}_total"}
    return sum(v for n, lab, v in samples if n in names and all(lab.get(k) == x for k, x in labels.items()))


def start_and_wait(process: ManagedProcess, ready: Callable[[], bool], timeout: float) -> None:
    """Start ``process`` and wait for ``ready``; fail at once, with its log, if it exits first."""
    process.start()
    deadline = time.monotonic() + timeout
    while not ready():
        if not process.alive() or time.monotonic() > deadline:
            state = "exited" if not process.alive() else f"not ready after {timeout}s"
            process.stop()
            raise RuntimeError(f"{process.name} {state}\n--- {process.name} log ---\n{process.log()}")
        time.sleep(0.1)


# --- collector -------------------------------------------------------------------------------------------------------
@dataclass
class Collector:
    """The OCB-built collector running shipped config files, with every address on a free loopback port."""

    tmp: Path
    configs: Sequence[Path | str]  # files, or ``yaml:key::path: value`` overrides merged in order
    env: dict[str, str] = field(default_factory=dict)
    name: str = "otelcol"

    def __post_init__(self) -> None:
        self.grpc_port, self.http_port = free_port(), free_port()
        self.health_port, self.prom_port, self.telemetry_port = free_port(), free_port(), free_port()
        self.queue_dir = self.tmp / f"{self.name}-queue"
        base = {
            "OTEL_ML_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{self.grpc_port}",
            "OTEL_ML_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{self.http_port}",
            "OTEL_ML_HEALTH_ENDPOINT": f"127.0.0.1:{self.health_port}",
            "OTEL_ML_PROMETHEUS_ENDPOINT": f"127.0.0.1:{self.prom_port}",
            "OTEL_ML_TELEMETRY_HOST": "127.0.0.1",
            "OTEL_ML_TELEMETRY_PORT": str(self.telemetry_port),
            "OTEL_ML_QUEUE_DIR": str(self.queue_dir),
            "OTEL_ML_HOSTMETRICS_INTERVAL": "1s",
            "OTEL_ML_RETRY_INITIAL_INTERVAL": "200ms",
            "OTEL_ML_RETRY_MAX_INTERVAL": "1s",
        }
        self.process = ManagedProcess(self.name, [collector_binary(), *(f"--config={c}" for c in self.configs)],
                                      self.tmp, env={**base, **self.env})

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def prometheus_target(self) -> str:
        """``host:port`` of the collector's ``prometheus`` exporter (the scrape target)."""
        return f"127.0.0.1:{self.prom_port}"

    def start(self, timeout: float = 60.0) -> Collector:
        start_and_wait(self.process, lambda: http_ok(f"http://127.0.0.1:{self.health_port}/"), timeout)
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def kill9(self) -> None:
        self.process.kill9()

    def telemetry(self) -> list[tuple[str, dict[str, str], float]]:
        """The collector's own metrics (``otelcol_*``)."""
        return scrape(f"http://127.0.0.1:{self.telemetry_port}/metrics")

    def exporter_sent(self, exporter: str) -> float:
        """Log records ``exporter`` delivered (acknowledged by its destination) since the collector started."""
        return sample_sum(self.telemetry(), "otelcol_exporter_sent_log_records", exporter=exporter)

    def queue_size(self, exporter: str) -> float:
        """Current size of ``exporter``'s sending queue (requests)."""
        return sample_sum(self.telemetry(), "otelcol_exporter_queue_size", exporter=exporter)


# --- otel-ml processor -----------------------------------------------------------------------------------------------
@dataclass
class Processor:
    """One otel-ml processor replica (OTLP/gRPC in, OTLP metrics out to the collector every ``interval``)."""

    tmp: Path
    collector_grpc: str
    instance_id: str = "replica-a"
    interval: str = "1s"
    port: int = 0
    store: dict[str, Any] = field(default_factory=dict)
    grpc: dict[str, Any] = field(default_factory=dict)  # more receiver.grpc settings (tls, auth)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.dir = self.tmp / f"processor-{self.instance_id}"
        self.dir.mkdir(parents=True, exist_ok=True)
        config = {
            "instance_id": self.instance_id,
            "receiver": {"grpc": {"endpoint": f"127.0.0.1:{self.port}", **self.grpc}, "http": None},
            "store": {"backend": "sqlite", "path": str(self.dir / "store.db"), **self.store},
            "metrics": {"otlp": {"endpoint": f"http://{self.collector_grpc}", "protocol": "grpc",
                                 "interval": self.interval}},
            "relabel": {"path": str(self.dir / "relabel.jsonl")},
        }
        self.config_path = self.dir / "processor.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.process = ManagedProcess(f"processor-{self.instance_id}", processor_command(self.config_path),
                                      self.tmp, cwd=ROOT)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Processor:
        start_and_wait(self.process, lambda: tcp_open(self.port), timeout)
        return self

    def stop(self) -> int | None:
        return self.process.stop()

    def kill9(self) -> None:
        self.process.kill9()


# --- the user's log backend ------------------------------------------------------------------------------------------
class LogSink:
    """An OTLP/HTTP ``/v1/logs`` receiver in this process: the log backend of the default pipeline."""

    def __init__(self) -> None:
        self.records: list[logs_pb2.LogRecord] = []
        self._lock = threading.Lock()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                with sink._lock:
                    for rl in request.resource_logs:
                        for sl in rl.scope_logs:
                            sink.records.extend(sl.log_records)
                payload = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def snapshot(self) -> list[logs_pb2.LogRecord]:
        with self._lock:
            return list(self.records)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the application: OTLP logs over gRPC ----------------------------------------------------------------------------
def _any(value: Any) -> common_pb2.AnyValue:
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, list | tuple):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[_any(v) for v in value]))
    return common_pb2.AnyValue(string_value=str(value))


def log_record(attributes: dict[str, Any], event_name: str = "", body: str = "",
               time_ns: int | None = None) -> logs_pb2.LogRecord:
    """One OTLP log record (an event when ``event_name`` is set)."""
    now = time_ns if time_ns is not None else time.time_ns()
    return logs_pb2.LogRecord(
        time_unix_nano=now, observed_time_unix_nano=now, event_name=event_name,
        body=common_pb2.AnyValue(string_value=body) if body else None,
        attributes=[common_pb2.KeyValue(key=k, value=_any(v)) for k, v in attributes.items()],
    )


class App:
    """An application that sends OTLP log batches to the collector over gRPC and retries until accepted."""

    def __init__(self, collector_grpc: str, service_name: str = "ml-app") -> None:
        self.channel = grpc.insecure_channel(collector_grpc)
        self.stub = logs_service_pb2_grpc.LogsServiceStub(self.channel)
        self.resource = resource_pb2.Resource(attributes=[
            common_pb2.KeyValue(key="service.name", value=_any(service_name))])

    def send(self, records: Sequence[logs_pb2.LogRecord], timeout: float = 60.0) -> None:
        """Export one batch; retry (like an OTel SDK) while the collector is down or pushing back."""
        request = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
            resource=self.resource,
            scope_logs=[logs_pb2.ScopeLogs(scope=common_pb2.InstrumentationScope(name=events.INSTRUMENTATION_SCOPE),
                                           log_records=list(records))])])
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self.stub.Export(request, timeout=10)
                assert not response.partial_success.rejected_log_records, response
                return
            except grpc.RpcError as exc:
                code = exc.code()  # type: ignore[attr-defined]
                retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                     grpc.StatusCode.DEADLINE_EXCEEDED)
                if not retryable or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def send_all(self, records: Sequence[logs_pb2.LogRecord], batch: int = 200) -> None:
        for i in range(0, len(records), batch):
            self.send(records[i:i + batch])

    def close(self) -> None:
        self.channel.close()


class Sender(threading.Thread):
    """Sends records in the background; :meth:`finish` joins and re-raises the sender's error, if any.

    With ``pause_after``, the sender stops once the first ``pause_after`` records were accepted (:attr:`paused` is
    set) and sends the rest only after :meth:`resume`: a test can act "mid-stream" with records still to come,
    whatever the machine's speed.
    """

    def __init__(self, app: App, records: Sequence[logs_pb2.LogRecord], batch: int,
                 pause_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self.app, self.records, self.batch = app, records, batch
        self.pause_after = len(records) if pause_after is None else pause_after
        self.paused, self._resumed = threading.Event(), threading.Event()
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.app.send_all(self.records[:self.pause_after], self.batch)
            self.paused.set()
            self._resumed.wait()
            self.app.send_all(self.records[self.pause_after:], self.batch)
        except BaseException as exc:  # reported by finish()
            self.error = exc
            self.paused.set()

    def resume(self) -> None:
        """Send the records after ``pause_after``."""
        self._resumed.set()

    def finish(self, timeout: float = 180.0) -> None:
        self.resume()
        self.join(timeout)
        assert not self.is_alive(), "sender did not finish"
        if self.error is not None:
            raise self.error


def wait_for(check: Any, timeout: float = 60.0, what: str = "condition") -> None:
    """``wait_until`` with a longer default suited to data flowing through the whole stack."""
    wait_until(check, timeout=timeout, interval=0.5, what=what)


# --- the whole loop --------------------------------------------------------------------------------------------------
class Stack:
    """app -> collector (shipped config) -> processor replica(s) -> collector -> Prometheus, plus the log sink.

    ``replicas`` > 1 runs the scale-out overlay (static resolver) in front of that many processors.
    """

    def __init__(self, tmp: Path, replicas: int = 1, collector_env: dict[str, str] | None = None,
                 configs: Sequence[Path | str] | None = None, store: dict[str, Any] | None = None,
                 remote_write: bool = False, processor_grpc: dict[str, Any] | None = None) -> None:
        self.tmp = tmp
        self.sink = LogSink()
        ports = [free_port() for _ in range(replicas)]
        # Prometheus scrapes the collector's prometheus exporter, or (remote_write) receives remote writes from it.
        self.prometheus: Prometheus
        metrics_env: dict[str, str] = {}
        if remote_write:
            self.prometheus = Prometheus(tmp, {})
            metrics_env = {"OTEL_ML_METRICS_EXPORTERS": "[prometheus_remote_write]",
                           "OTEL_ML_REMOTE_WRITE_ENDPOINT": f"{self.prometheus.url}/api/v1/write"}
        env = {**metrics_env, "OTEL_ML_LOGS_EXPORTER": "otlp_http/logs", "OTEL_ML_LOGS_ENDPOINT": self.sink.endpoint,
               "OTEL_ML_PROCESSOR_ENDPOINT": f"127.0.0.1:{ports[0]}",
               "OTEL_ML_PROCESSOR_REPLICAS": "[" + ", ".join(f"127.0.0.1:{p}" for p in ports) + "]",
               # scaleout-dns.yaml: every address of the name is a replica on this port. An IP literal resolves to
               # itself (one replica); "localhost" may also resolve to ::1 where nothing listens.
               "OTEL_ML_PROCESSOR_DNS_NAME": "127.0.0.1", "OTEL_ML_PROCESSOR_PORT": str(ports[0]),
               "OTEL_ML_DNS_INTERVAL": "1s",
               **(collector_env or {})}
        if configs is None:
            configs = (GATEWAY,) if replicas == 1 else (GATEWAY, SCALEOUT_STATIC)
        self.collector = Collector(tmp, configs, env=env)
        self.store = store or {}
        self.processors = [Processor(tmp, self.collector.grpc_endpoint, instance_id=f"replica-{i}", port=p,
                                     store=self.store, grpc=processor_grpc or {}) for i, p in enumerate(ports)]
        if not remote_write:
            self.prometheus = Prometheus(tmp, {"otelcol": [self.collector.prometheus_target]})
        self.app: App | None = None

    def start(self) -> Stack:
        self.collector.start()
        for p in self.processors:
            p.start()
        self.prometheus.start()
        self.app = App(self.collector.grpc_endpoint)
        return self

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
        self.prometheus.stop()
        for p in self.processors:
            p.stop()
        self.collector.stop()
        self.sink.close()

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, records: Sequence[logs_pb2.LogRecord], batch: int = 200) -> None:
        assert self.app is not None
        self.app.send_all(records, batch)

    def add_processor(self) -> Processor:
        """Start one more replica (not yet known to the collector: see :meth:`set_replicas`)."""
        p = Processor(self.tmp, self.collector.grpc_endpoint, instance_id=f"replica-{len(self.processors)}",
                      store=self.store).start()
        self.processors.append(p)
        return p

    def set_replicas(self, replicas: Sequence[Processor]) -> None:
        """Restart the collector with ``replicas`` as the static resolver's list (how a static list changes)."""
        self.collector.process.env["OTEL_ML_PROCESSOR_REPLICAS"] = "[" + ", ".join(p.endpoint for p in replicas) + "]"
        assert self.collector.stop() == 0
        self.collector.start()

    def send_in_background(self, records: Sequence[logs_pb2.LogRecord], batch: int = 200,
                           pause_after: int | None = None) -> Sender:
        assert self.app is not None
        return Sender(self.app, records, batch, pause_after)

    def value(self, expr: str) -> float:
        """Scalar PromQL result; 0 when the result is empty (nothing exported yet)."""
        v = self.prometheus.query_value(expr)
        return 0.0 if v is None else v

    def wait_value(self, expr: str, expected: float, timeout: float = 90.0) -> None:
        """Wait until ``expr`` equals ``expected``; fail with the last value and the process logs."""
        last: list[float] = []

        def check() -> bool:
            last[:] = [self.value(expr)]
            return last[0] == expected
        try:
            wait_for(check, timeout=timeout, what=f"{expr} == {expected}")
        except TimeoutError as exc:
            logs = "\n".join(f"--- {p.name} ---\n{p.log(3000)}" for p in
                             (self.collector.process, *(r.process for r in self.processors)))
            raise AssertionError(f"{expr}: last value {last}, expected {expected}\n{logs}") from exc
