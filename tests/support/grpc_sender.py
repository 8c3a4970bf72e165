"""Pre-serialized OTLP log requests sent over gRPC with a bounded number in flight (the benchmarks' client)."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import grpc

EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
"""The OTLP logs Export method."""


def send_requests(ports: list[int], bodies: list[bytes], inflight: int = 4) -> tuple[float, int]:
    """Send every body (identity serializer: no client-side protobuf work), request ``i`` to
    ``ports[i % len(ports)]`` on 127.0.0.1, at most ``inflight`` at a time; returns (seconds, acknowledged)."""
    channels = [grpc.insecure_channel(f"127.0.0.1:{p}", options=[("grpc.max_send_message_length", 64 << 20)])
                for p in ports]
    exports = [c.unary_unary(EXPORT, request_serializer=None, response_deserializer=None) for c in channels]
    sem = threading.Semaphore(inflight)
    acked = [0]
    lock = threading.Lock()

    def done(fut: Any) -> None:
        try:
            fut.result()
            with lock:
                acked[0] += 1
        except grpc.RpcError as exc:
            print("  request failed:", exc.code(), exc.details(), file=sys.stderr)
        sem.release()

    start = time.perf_counter()
    for i, body in enumerate(bodies):
        sem.acquire()
        exports[i % len(exports)].future(body, timeout=120).add_done_callback(done)
    for _ in range(inflight):
        sem.acquire()
    elapsed = time.perf_counter() - start
    for c in channels:
        c.close()
    return elapsed, acked[0]
