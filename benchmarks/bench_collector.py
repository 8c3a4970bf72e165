"""Throughput through the real collector: events/s end to end, where the CPU goes, next to the processor alone.

Same-shaped pre-serialized OTLP/gRPC requests (predictions then their labels, ``--batch`` records each) are sent,
from ``--clients`` threads, straight to the otel-ml processor, or to the OCB-built collector running
``collector-config/gateway.yaml`` (routing connector -> otlp_grpc exporter with the persistent file_storage queue ->
processor), or to a second collector with the same file and gzip towards the processor; in turn, ``--repeats`` times. A run ends when the processor has acknowledged every event (the collector's
``otelcol_exporter_sent_log_records``; for the direct path, the last response). CPU seconds of the collector, the
processor and the load generator come from /proc; the bottleneck is the part whose CPU per wall second is closest
to one core (the processor's ingest path holds the GIL) or two (the collector, the machine).

    .venv/bin/python benchmarks/bench_collector.py [--events 40000] [--batch 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2  # noqa: E402
from opentelemetry.proto.common.v1 import common_pb2  # noqa: E402
from opentelemetry.proto.logs.v1 import logs_pb2  # noqa: E402

from otel_ml.semconv import events  # noqa: E402
from tests.integration.collector_stack import GATEWAY, ML_EXPORTER, Collector, Processor  # noqa: E402
from tests.integration.collector_workload import make_workload  # noqa: E402
from tests.support.grpc_sender import EXPORT  # noqa: E402
from tests.support.procs import free_port, wait_until  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of ``pid`` (default: this process, all threads)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def requests(n_events: int, batch: int, seed: int) -> list[bytes]:
    """Serialized ExportLogsServiceRequests: ``n_events / 2`` predictions, then their labels."""
    w = make_workload(n_events // 2, model=f"bench{seed}", seed=seed)
    records = w.predictions() + w.labels()
    resource = logs_pb2.ResourceLogs().resource
    resource.attributes.append(common_pb2.KeyValue(key="service.name",
                                                   value=common_pb2.AnyValue(string_value="bench")))
    out = []
    for i in range(0, len(records), batch):
        req = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
            resource=resource, scope_logs=[logs_pb2.ScopeLogs(
                scope=common_pb2.InstrumentationScope(name=events.INSTRUMENTATION_SCOPE),
                log_records=records[i:i + batch])])])
        out.append(req.SerializeToString())
    return out


def blast(target: str, payloads: Sequence[bytes], clients: int) -> None:
    """Send every payload (pre-serialized) from ``clients`` threads; retry on UNAVAILABLE / RESOURCE_EXHAUSTED."""
    channel = grpc.insecure_channel(target)
    call = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
    it = iter(payloads)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                body = next(it, None)
            if body is None:
                return
            while True:
                try:
                    call(body, timeout=30)
                    break
                except grpc.RpcError as exc:
                    if exc.code() not in (grpc.StatusCode.UNAVAILABLE,  # type: ignore[attr-defined]
                                          grpc.StatusCode.RESOURCE_EXHAUSTED):
                        raise
                    time.sleep(0.05)
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()


def delivered(collector: Collector, target: float) -> bool:
    """True once the collector's exporter has had ``target`` records acknowledged by the processor."""
    return collector.exporter_sent(ML_EXPORTER) >= target


def measure(send: Callable[[], None], done: Callable[[], bool], pids: dict[str, int]) -> dict[str, float]:
    """Wall time until ``done``, time until the last request was acknowledged, and CPU seconds per part."""
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"loadgen": cpu_seconds()}
    t0 = time.monotonic()
    send()
    sent = time.monotonic() - t0  # every request acknowledged by its receiver (collector: queued on disk)
    wait_until(done, timeout=600, interval=0.05, what="all events acknowledged")
    wall = time.monotonic() - t0
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()} | {"loadgen": cpu_seconds()
                                                                                  - cpu0["loadgen"]}
    return {"wall": wall, "sent": sent, **{f"cpu_{k}": v for k, v in cpu.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=40_000, help="events per run (half predictions, half labels)")
    ap.add_argument("--batch", type=int, default=500, help="log records per OTLP request")
    ap.add_argument("--clients", type=int, default=4, help="concurrent sender threads")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--override", action="append", default=[],
                    help="extra collector --config, e.g. 'yaml:exporters::otlp_grpc/otel_ml::sending_queue::num_consumers: 8'")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    proc_port = free_port()
    env = {"OTEL_ML_PROCESSOR_ENDPOINT": f"127.0.0.1:{proc_port}", "OTEL_ML_HOSTMETRICS_INTERVAL": "10s"}
    # The shipped gateway.yaml (compression none towards the processor) and the same with gzip, side by side.
    collectors = {
        "collector": Collector(tmp, (GATEWAY, *args.override), env=env),
        "coll+gzip": Collector(tmp, (GATEWAY, *args.override), name="otelcol-gzip",
                               env={**env, "OTEL_ML_PROCESSOR_COMPRESSION": "gzip"}),
    }
    processor = Processor(tmp, collectors["collector"].grpc_endpoint, instance_id="bench", port=proc_port,
                          interval="5s")
    for c in collectors.values():
        c.start()
    processor.start()
    results: dict[str, list[dict[str, float]]] = {"direct": [], **{name: [] for name in collectors}}
    try:
        for rep in range(args.repeats):
            for i, path in enumerate(results):
                payloads = requests(args.events, args.batch, seed=100 * rep + i)
                if path == "direct":
                    r = measure(partial(blast, processor.endpoint, payloads, args.clients), lambda: True,
                                {"processor": processor.process.pid})
                else:
                    col = collectors[path]
                    target = col.exporter_sent(ML_EXPORTER) + args.events
                    r = measure(partial(blast, col.grpc_endpoint, payloads, args.clients),
                                partial(delivered, col, target),
                                {"processor": processor.process.pid, "collector": col.process.pid})
                results[path].append(r)
                print(f"rep {rep} {path:9s} {args.events / r['wall']:8.0f} events/s  "
                      + "  ".join(f"{k}={v:.2f}s" for k, v in r.items()), flush=True)
    finally:
        processor.stop()
        for c in collectors.values():
            c.stop()

    print(f"\n{args.events} events per run ({args.events // 2} predictions + their labels), {args.batch} records "
          f"per request, {args.clients} clients, {os.cpu_count()} CPUs, median of {args.repeats}:")
    med: dict[str, dict[str, float]] = {p: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
                                        for p, rs in results.items()}
    for path, r in med.items():
        cores = "  ".join(f"{k[4:]} {v / r['wall']:.2f} cores ({v / args.events * 1e6:.0f} µs/event)"
                          for k, v in r.items() if k.startswith("cpu_"))
        print(f"  {path:9s} {args.events / r['wall']:8.0f} events/s   {cores}")
    for path in collectors:
        print(f"  {path} / processor alone: {med['direct']['wall'] / med[path]['wall']:.2f}x the throughput")


if __name__ == "__main__":
    main()
