"""A model-serving process instrumented with otel-ml, for the integration tests (run as a subprocess).

Usage: ``python -m tests.alerts.serving_app <collector-grpc host:port> <seconds> <healthy|degraded>``.

Serves one multiclass model ``serving`` for ``seconds``: every call is an instrumented inference returning a label
and class probabilities (real ``ml.client.*`` metrics, score histogram included, and real prediction events through
the collector); its label follows at once. Degraded: one
call in four raises (client inference errors), one in four takes 0.6 s (above the latency SLO), every other
prediction is wrong.

It also exports the serving process's CPU time and resident memory (``process.cpu.time``,
``process.memory.usage``) with the OpenTelemetry SDK's own MeterProvider and two observable instruments, to the
same collector: the snippet recommended in ``dashboards/README.md`` (:func:`process_metrics`).
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

import otel_ml

CLASSES = ["cat", "dog", "fox"]


def _cpu_time(options: CallbackOptions) -> Iterable[Observation]:
    times = os.times()
    yield Observation(times.user, {"cpu.mode": "user"})
    yield Observation(times.system, {"cpu.mode": "system"})


def _memory_usage(options: CallbackOptions) -> Iterable[Observation]:
    try:  # Linux: current resident set size
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # elsewhere: peak RSS (KiB on Linux/BSD, bytes on macOS)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    yield Observation(rss)


def process_metrics(endpoint: str, attributes: dict[str, str], interval_s: float = 10.0) -> MeterProvider:
    """OTel semconv ``process.cpu.time`` and ``process.memory.usage`` of this process, exported over OTLP/gRPC.

    Two observable instruments read at each export (no thread or work between exports). The resource must carry
    the same ``service.name`` / ``service.instance.id`` as the app's otel-ml metrics: the dashboards match them by
    ``job`` / ``instance``.
    """
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True),
                                           export_interval_millis=interval_s * 1000)
    provider = MeterProvider(resource=Resource.create(attributes), metric_readers=[reader])
    meter = provider.get_meter("serving-process")
    meter.create_observable_counter("process.cpu.time", [_cpu_time], unit="s", description="CPU seconds used")
    meter.create_observable_up_down_counter("process.memory.usage", [_memory_usage], unit="By",
                                            description="Resident memory")
    return provider


def main(argv: list[str]) -> int:
    """Serve until the time is up, then flush."""
    endpoint, seconds, mode = argv[0], float(argv[1]), argv[2]
    attributes = {"service.name": "ml-serving", "service.instance.id": "serving-1"}
    otel_ml.configure(endpoint=f"http://{endpoint}", protocol="grpc", metric_interval=1.0, schedule_delay=0.2,
                      resource=attributes)
    provider = process_metrics(f"http://{endpoint}", attributes, interval_s=1.0)
    monitor = otel_ml.ModelMonitor("serving", version="v1", task="multiclass", classes=CLASSES, segments=["region"])
    degraded = mode == "degraded"
    state = {"i": 0}

    @monitor.instrument(prediction="label", scores="proba",
                        segments=lambda args, kwargs, result: {"region": "eu" if args[0] % 2 else "us"})
    def predict(i: int) -> dict[str, Any]:
        if degraded and i % 4 == 3:
            raise ValueError("feature out of range")
        time.sleep(0.6 if degraded and i % 4 == 2 else 0.001)  # degraded: a quarter of the calls break the SLO
        truth = CLASSES[i % 3]
        label = CLASSES[(i + 1) % 3] if degraded and i % 2 else truth
        confidence = 0.5 if degraded else 0.9  # degraded: the model is unsure
        proba = [confidence if c == label else (1 - confidence) / 2 for c in CLASSES]
        return {"label": label, "proba": proba}

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        i = state["i"]
        state["i"] += 1
        try:
            predict(i)
        except ValueError:
            continue
        pid = otel_ml.current_prediction_id()
        if pid is not None:
            monitor.log_label(pid, CLASSES[i % 3])
        time.sleep(0.02)
    otel_ml.shutdown()
    provider.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
