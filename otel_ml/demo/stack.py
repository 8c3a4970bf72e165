"""The pieces the demo runs against: its own processor on loopback, or a real collector and Prometheus.

Default: the demo starts ``otel-ml processor`` as a child process (SQLite store, OTLP gRPC on a free loopback port,
its Prometheus scrape endpoint on another) and reads the metrics from that endpoint. With ``--collector`` and
``--prometheus`` it sends to a running collector (which routes to a processor reading ``--reference-dir``) and
reads the metrics back from Prometheus.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from otel_ml.demo.metrics import MetricSource, PrometheusSource, ScrapeSource


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(slots=True)
class Stack:
    """Where the demo sends events and reads metrics.

    Attributes:
        otlp_endpoint: OTLP gRPC endpoint the instrumented models export to.
        source: Where metric snapshots come from.
        processor: The child processor process (``None`` when an external stack is used).
        log_path: The child processor's log file.
    """

    otlp_endpoint: str
    source: MetricSource
    processor: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def log_tail(self, chars: int = 3000) -> str:
        """End of the child processor's log (for error messages)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def close(self) -> None:
        """Stop the child processor (SIGTERM, then SIGKILL)."""
        if self.processor is None or self.processor.poll() is not None:
            return
        self.processor.terminate()
        try:
            self.processor.wait(15)
        except subprocess.TimeoutExpired:
            self.processor.kill()
            self.processor.wait(5)


def processor_config(work: Path, grpc_port: int, prom_port: int, reference_dir: Path | None) -> dict[str, object]:
    """The embedded processor config: SQLite store under ``work``, loopback only, references from ``reference_dir``.

    Without ``reference_dir`` the estimation/drift stage is off (realized quality only).
    """
    data = work / "processor-data"
    config: dict[str, object] = {
        "instance_id": "otel-ml-demo",
        "receiver": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}, "http": None},
        "store": {"backend": "sqlite", "path": str(data / "store.db"), "label_window": "7d"},
        "metrics": {"otlp": None, "prometheus": {"endpoint": f"127.0.0.1:{prom_port}"}},
    }
    if reference_dir is not None:
        config["reference"] = {"directory": str(reference_dir), "reload_interval": "1s"}
        config["relabel"] = {"path": str(data / "relabel.jsonl"), "max_samples": 2000}
    return config


def start_local(work: Path, reference_dir: Path | None, timeout: float = 60.0) -> Stack:
    """Start ``otel-ml processor`` as a child process and wait until it accepts OTLP and serves metrics."""
    work.mkdir(parents=True, exist_ok=True)
    grpc_port, prom_port = free_port(), free_port()
    config_path = work / "processor.yaml"
    config_path.write_text(yaml.safe_dump(processor_config(work, grpc_port, prom_port, reference_dir),
                                          sort_keys=False))
    log_path = work / "processor.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "otel_ml.processor", "--config", str(config_path)],
                                stdout=log, stderr=subprocess.STDOUT)
    metrics_url = f"http://127.0.0.1:{prom_port}/metrics"
    stack = Stack(f"http://127.0.0.1:{grpc_port}", ScrapeSource(metrics_url), proc, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the processor exited with status {proc.returncode}:\n{stack.log_tail()}")
        if _tcp_open(grpc_port) and _http_ok(metrics_url):
            return stack
        time.sleep(0.1)
    stack.close()
    raise RuntimeError(f"the processor did not get ready within {timeout:.0f}s:\n{stack.log_tail()}")


def external(collector: str, prometheus: str, timeout: float = 120.0) -> Stack:
    """A running collector (OTLP gRPC) and Prometheus (waited for up to ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not _http_ok(f"{prometheus.rstrip('/')}/-/ready"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus is not ready at {prometheus}")
        time.sleep(1.0)
    return Stack(collector, PrometheusSource(prometheus))
