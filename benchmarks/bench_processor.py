"""Processor throughput on one core, end to end, side by side with the parse-only ceiling; RSS with many pending.

Three measurements in one run:

1. ``ceiling`` (measured before and after the end-to-end run; the mean is reported): in this process, pinned to
   core 0: parse each pre-serialized 1000-record
   ``ExportLogsServiceRequest`` with upb and walk every record's attributes into a dict (the practical ceiling of any
   Python OTLP consumer), then the processor's Python decode path (upb parse + ``decode_request``) and the decode
   the processor runs (``decode_body``: the C fast path when it is built, see ``otel_ml/processor/_native.py``).
2. ``end to end``: a real processor process (``python -m otel_ml.processor``, SQLite WAL store, group commit) pinned
   to core 0 with ``os.sched_setaffinity``; this process, pinned to core 1, sends the same pre-serialized requests
   over OTLP/gRPC with 4 requests in flight. Each request has 500 predictions (10 attributes + 5 features: model,
   version, task, id, class, score, classes, scores, 2 segments) and 500 labels of predictions sent two requests
   earlier, so every label joins. Events/s = records acknowledged / wall time (acknowledged = committed); the
   processor's CPU time is read from /proc, giving events per CPU-second as well. The joins count is checked on the
   processor's scrape endpoint afterwards.
3. ``pending``: ``--pending`` predictions (default 10 million) written straight into a SqliteJoinStore through the
   same ``ingest`` + ``commit`` path in batches of 20 000 (time and rate reported), then a real processor is started
   on that store, receives traffic (labels joining some of them) and its RSS is read.

The machine is shared (2 cores, other jobs running): compare the end-to-end figure with the ceiling measured in the
same run. Run: ``.venv/bin/python benchmarks/bench_processor.py [--requests 200] [--pending 10000000]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
import yaml
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from otel_ml.processor import _native  # noqa: E402
from otel_ml.processor.decode import decode_body, decode_request  # noqa: E402
from otel_ml.processor.records import join_key  # noqa: E402
from otel_ml.processor.store import SqliteJoinStore  # noqa: E402
from tests.support import otlp_events as ev  # noqa: E402
from tests.support.grpc_sender import send_requests  # noqa: E402
from tests.support.procs import free_port, http_ok, tcp_open, wait_until  # noqa: E402
from tests.support.workload import PER_REQUEST, benchmark_requests, label, prediction  # noqa: E402


def walk(request: ExportLogsServiceRequest) -> int:
    """Parse-only ceiling: every record's attributes into a dict."""
    n = 0
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                attrs = {}
                for kv in rec.attributes:
                    v = kv.value
                    kind = v.WhichOneof("value")
                    attrs[kv.key] = getattr(v, kind) if kind else None
                n += 1
    return n


def ceiling(bodies: list[bytes]) -> dict[str, float]:
    os.sched_setaffinity(0, {0})
    paths = {"parse+walk": lambda b: walk(ExportLogsServiceRequest.FromString(b)),
             "parse+decode": lambda b: decode_request(ExportLogsServiceRequest.FromString(b), 0.0, False),
             "decode_body": lambda b: decode_body(b, 0.0, False)}
    out: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(3):
        for name, fn in paths.items():
            start = time.process_time()
            for body in bodies[:40]:
                fn(body)
            out[name].append(40 * PER_REQUEST / (time.process_time() - start))
    return {k: statistics.median(v) for k, v in out.items()}


def start_processor(tmp: Path, store: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    grpc_port, prom_port = free_port(), free_port()
    cfg = {"instance_id": "bench", "receiver": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}, "http": None},
           "store": {"path": str(store)},
           "metrics": {"otlp": None, "prometheus": {"endpoint": f"127.0.0.1:{prom_port}"}}}
    path = tmp / f"processor-{grpc_port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(tmp / f"processor-{grpc_port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "otel_ml.processor", "--config", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=ROOT, preexec_fn=lambda: os.sched_setaffinity(0, {0}))
    wait_until(lambda: tcp_open(grpc_port) and http_ok(f"http://127.0.0.1:{prom_port}/metrics"), 60,
               what="processor")
    return proc, grpc_port, prom_port


def scrape_total(prom_port: int, family: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/metrics", timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith(family + "{") or ln.startswith(family + " "))


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def end_to_end(tmp: Path, bodies: list[bytes]) -> dict[str, float]:
    os.sched_setaffinity(0, {1})
    proc, port, prom_port = start_processor(tmp, tmp / "e2e.db")
    try:
        warm, rest = bodies[:10], bodies[10:]
        send_requests([port], warm)
        cpu0 = cpu_seconds(proc.pid)
        elapsed, acked = send_requests([port], rest)
        cpu = cpu_seconds(proc.pid) - cpu0
        time.sleep(1.5)
        joins = scrape_total(prom_port, "ml_processor_joins_total")
        rss = psutil.Process(proc.pid).memory_info().rss
    finally:
        proc.terminate()
        proc.wait(30)
    events = acked * PER_REQUEST
    expected_joins = (len(bodies) - 2) * PER_REQUEST // 2
    return {"events/s": events / elapsed, "events per CPU-s": events / cpu, "requests": acked, "seconds": elapsed,
            "joins ok": float(joins == expected_joins), "joins": joins, "rss MB": rss / 2**20}


def pending(tmp: Path, n: int, batch: int = 20_000) -> dict[str, float]:
    os.sched_setaffinity(0, {0, 1})
    path = tmp / "pending.db"
    store = SqliteJoinStore(path, 7 * 86400.0, 20_000_000)
    me = psutil.Process()
    start = time.perf_counter()
    now = time.time()
    rss_peak = 0
    for b in range(0, n, batch):
        rows = [(join_key("fraud", f"id-{i}"), now, "fraud", "2024-06-01", "binary", "channel=web,region=eu",
                 "1" if i % 3 == 0 else "0", None, random.random(), "1", None, now, None, None, None, None, None)
                for i in range(b, min(b + batch, n))]
        store.ingest(rows, [], now)
        store.commit({})
        if (b // batch) % 50 == 0:
            rss_peak = max(rss_peak, me.memory_info().rss)
            print(f"  {b + len(rows):>10,} pending, {time.perf_counter() - start:7.1f} s, "
                  f"RSS {me.memory_info().rss / 2**20:.0f} MB", flush=True)
    elapsed = time.perf_counter() - start
    rss_peak = max(rss_peak, me.memory_info().rss)
    store.close()
    size = sum(p.stat().st_size for p in tmp.glob("pending.db*"))
    # a real processor on that store: starts, receives labels for 50 000 of them and 50 000 new predictions
    recs = []
    bodies = []
    ts = time.time_ns()
    for i in range(50_000):
        recs.append(label(i * 97 % n, ts))
        recs.append(prediction(n + i, ts))
        if len(recs) == PER_REQUEST:
            bodies.append(ev.request(recs).SerializeToString())
            recs = []
    proc, port, prom_port = start_processor(tmp, path)
    try:
        traffic, _ = send_requests([port], bodies)
        time.sleep(2)
        proc_rss = psutil.Process(proc.pid).memory_info().rss
        pending_now = scrape_total(prom_port, "ml_processor_store_pending")
    finally:
        proc.terminate()
        proc.wait(60)
    return {"pending": n, "insert seconds": elapsed, "inserts/s": n / elapsed, "writer RSS MB": rss_peak / 2**20,
            "db MB": size / 2**20, "processor RSS MB": proc_rss / 2**20, "pending after traffic": pending_now,
            "traffic seconds": traffic}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200, help="1000-record requests for the end-to-end run")
    ap.add_argument("--pending", type=int, default=10_000_000, help="pending predictions for the RSS run (0: skip)")
    args = ap.parse_args()
    random.seed(1)
    with tempfile.TemporaryDirectory(prefix="bench-processor-") as d:
        tmp = Path(d)
        print(f"generating {args.requests} requests of {PER_REQUEST} records ...", flush=True)
        bodies = benchmark_requests(args.requests)
        before = ceiling(bodies)
        e = end_to_end(tmp, bodies)
        after = ceiling(bodies)  # measured on both sides of the end-to-end run: the machine's load drifts
        c = {k: (before[k] + after[k]) / 2 for k in before}
        print(f"ceiling (core 0, records per CPU-second, mean of before/after): parse+walk {c['parse+walk']:,.0f} "
              f"({before['parse+walk']:,.0f}/{after['parse+walk']:,.0f}), parse+decode (Python path) "
              f"{c['parse+decode']:,.0f} ({before['parse+decode']:,.0f}/{after['parse+decode']:,.0f}), decode_body "
              f"({_native.status}) {c['decode_body']:,.0f} ({before['decode_body']:,.0f}/{after['decode_body']:,.0f})",
              flush=True)
        print(f"end to end (processor pinned to core 0, SQLite WAL): {e['events/s']:,.0f} events/s wall, "
              f"{e['events per CPU-s']:,.0f} events per processor CPU-second; {e['requests']:.0f} requests in "
              f"{e['seconds']:.1f} s; joins {e['joins']:,.0f} ({'ok' if e['joins ok'] else 'MISMATCH'}); "
              f"RSS {e['rss MB']:.0f} MB", flush=True)
        print(f"ratio end-to-end / parse+walk ceiling: {e['events per CPU-s'] / c['parse+walk']:.0%} (CPU), "
              f"{e['events/s'] / c['parse+walk']:.0%} (wall)", flush=True)
        if args.pending:
            print(f"writing {args.pending:,} pending predictions through SqliteJoinStore.ingest ...", flush=True)
            p = pending(tmp, args.pending)
            print(f"pending: {p['pending']:,.0f} in {p['insert seconds']:.0f} s ({p['inserts/s']:,.0f}/s), writer "
                  f"RSS peak {p['writer RSS MB']:.0f} MB, database {p['db MB']:,.0f} MB on disk; a processor on that "
                  f"store after 100k events (50k labels joining random pending predictions): RSS {p['processor RSS MB']:.0f} MB, "
                  f"pending {p['pending after traffic']:,.0f}, {100_000 / p['traffic seconds']:,.0f} events/s", flush=True)


if __name__ == "__main__":
    main()
