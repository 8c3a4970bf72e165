"""Running the real processor as a child process in tests (config file, readiness, scraping its counters)."""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.procs import ManagedProcess, free_port, http_ok, processor_command, tcp_open


def _merge(into: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Deep-merge ``overrides`` into ``into`` (mappings merge, anything else replaces; None disables a section)."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class ProcessorProcess:
    """``python -m otel_ml.processor`` on free loopback ports with a SQLite store in ``tmp``."""

    def __init__(self, tmp: Path, name: str = "processor", **overrides: Any) -> None:
        self.grpc_port, self.http_port, self.prom_port = free_port(), free_port(), free_port()
        config: dict[str, Any] = {
            "instance_id": "test-replica",
            "receiver": {"grpc": {"endpoint": f"127.0.0.1:{self.grpc_port}"},
                         "http": {"endpoint": f"127.0.0.1:{self.http_port}"}},
            "store": {"backend": "sqlite", "path": str(tmp / "store.db")},
            "metrics": {"otlp": None, "prometheus": {"endpoint": f"127.0.0.1:{self.prom_port}"}},
        }
        _merge(config, overrides)
        self.config_path = tmp / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.process = ManagedProcess(name, processor_command(self.config_path), tmp)

    def start(self) -> ProcessorProcess:
        self.process.start().wait_ready(
            lambda: tcp_open(self.grpc_port) and http_ok(f"http://127.0.0.1:{self.prom_port}/metrics"))
        return self

    @property
    def scrape_target(self) -> str:
        return f"127.0.0.1:{self.prom_port}"

    def scrape(self) -> dict[str, float]:
        """``{series without scope labels: value}`` from the processor's /metrics (sums over scope labels)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prom_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            series, value = line.rsplit(" ", 1)
            series = re.sub(r',?otel_scope_[a-z_]+="[^"]*"', "", series).replace("{,", "{").replace("{}", "")
            out[series] = out.get(series, 0.0) + float(value)
        return out

    def total(self, family: str) -> float:
        """Sum of every series of ``family``."""
        return sum(v for k, v in self.scrape().items() if k == family or k.startswith(family + "{"))


class MetricsReceiver:
    """A real OTLP/gRPC ``MetricsService`` on a free port collecting what the processor exports."""

    def __init__(self) -> None:
        from concurrent import futures

        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

        self.requests: list[Any] = []
        receiver = self

        class Servicer(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:
                receiver.requests.append(request)
                return ExportMetricsServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(2))
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Servicer(), self.server)  # type: ignore[no-untyped-call]
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def latest(self) -> dict[str, Any]:
        """The most recent data of every metric name (cumulative: the latest export has the totals)."""
        found: dict[str, Any] = {}
        for req in list(self.requests):
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        found[metric.name] = metric
        return found

    def total(self, name: str, **attrs: str) -> float:
        """Sum of the latest sum points of ``name`` matching ``attrs``."""
        metric = self.latest().get(name)
        if metric is None:
            return 0.0
        total = 0.0
        for p in metric.sum.data_points:
            labels = {kv.key: kv.value.string_value for kv in p.attributes}
            if all(labels.get(k) == v for k, v in attrs.items()):
                total += p.as_double
        return total

    def stop(self) -> None:
        self.server.stop(0)
