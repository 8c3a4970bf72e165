"""``otel-ml demo --collector ... --prometheus ...``: the demo through a real collector and a real Prometheus.

The OCB-built collector runs the shipped ``collector-config/gateway.yaml`` (only its ``OTEL_ML_*`` addresses set),
routes the demo's events to a real processor, takes the processor's OTLP metrics into its ``prometheus`` exporter,
and a real Prometheus scrapes it; the demo reads everything back through PromQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from otel_ml.demo import cli, run, stack
from otel_ml.demo.models import ROUTER
from tests.support.procs import (
    ROOT,
    ManagedProcess,
    Prometheus,
    collector_command,
    free_port,
    http_ok,
    processor_command,
    tcp_open,
)

pytestmark = pytest.mark.integration


def test_demo_through_collector_and_prometheus(tmp_path: Path) -> None:
    grpc, health, prom_exporter, telemetry, processor_port = (free_port() for _ in range(5))
    env = {
        "OTEL_ML_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc}", "OTEL_ML_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
        "OTEL_ML_HEALTH_ENDPOINT": f"127.0.0.1:{health}", "OTEL_ML_PROMETHEUS_ENDPOINT": f"127.0.0.1:{prom_exporter}",
        "OTEL_ML_TELEMETRY_HOST": "127.0.0.1", "OTEL_ML_TELEMETRY_PORT": str(telemetry),
        "OTEL_ML_QUEUE_DIR": str(tmp_path / "queue"), "OTEL_ML_PROCESSOR_ENDPOINT": f"127.0.0.1:{processor_port}",
        "OTEL_ML_RETRY_INITIAL_INTERVAL": "200ms", "OTEL_ML_RETRY_MAX_INTERVAL": "1s",
    }
    collector = ManagedProcess("otelcol", collector_command(ROOT / "collector-config" / "gateway.yaml"), tmp_path,
                               env=env)
    reference_dir = tmp_path / "references"
    config = stack.processor_config(tmp_path / "processor", processor_port, free_port(), reference_dir)
    config["metrics"]["otlp"] = {"endpoint": f"http://127.0.0.1:{grpc}", "protocol": "grpc", "interval": "1s"}
    (tmp_path / "processor.yaml").write_text(yaml.safe_dump(config))
    processor = ManagedProcess("processor", processor_command(tmp_path / "processor.yaml"), tmp_path)
    prometheus = Prometheus(tmp_path, {"otelcol": [f"127.0.0.1:{prom_exporter}"]})
    try:
        collector.start().wait_ready(lambda: http_ok(f"http://127.0.0.1:{health}/"))
        processor.start().wait_ready(lambda: tcp_open(processor_port))
        prometheus.start()
        settings = run.Settings(days=10, day_seconds=1.5, per_day=120)
        outcome = cli.execute(settings, tmp_path / "out", collector=f"http://127.0.0.1:{grpc}",
                              prometheus=prometheus.url, reference_dir=reference_dir, report=False)
    finally:
        prometheus.stop()
        processor.stop()
        collector.stop()
    assert outcome.timeline.traffic(ROUTER) == [120.0] * 10, processor.log() + collector.log()
    realized = outcome.timeline.realized_accuracy(ROUTER)
    assert realized[-1] is not None and 0.3 < realized[-1] <= 1.0
    estimated, _ = outcome.timeline.estimated_accuracy(ROUTER)  # the estimation stage's counters, via PromQL
    assert estimated[-1] is not None and 0.3 < estimated[-1] <= 1.0
    assert outcome.analysis.unseen_classes == ("mystery",)
