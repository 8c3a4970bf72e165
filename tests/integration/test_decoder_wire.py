"""Real producers' bytes through the processor's decoder: the otel-ml SDK directly, and the same events re-encoded
by the OCB-built collector (gateway.yaml, OTLP/gRPC exporter towards the processor).

The C fast path must decode every common-shape event of both producers itself (no record handed to the Python
fallback, no request handed back) and give exactly what the Python path gives.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

import otel_ml
from otel_ml.instrumentation.api import reset
from otel_ml.processor import _native
from tests.integration.collector_stack import GATEWAY, Collector
from tests.processor.test_fastdecode import check
from tests.support.procs import free_port, wait_until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(_native.decoder is None, reason=_native.status)]
N = 200  # predictions per shape


class RawLogsServer:
    """An OTLP/gRPC LogsService that keeps each request's bytes as received (no parsing on the way in)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(
            self._export, request_deserializer=None, response_serializer=ExportLogsServiceResponse.SerializeToString)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
            "opentelemetry.proto.collector.logs.v1.LogsService", {"Export": handler})])
        self.port = self.server.add_insecure_port(f"127.0.0.1:{free_port()}")
        self.server.start()

    def _export(self, body: bytes, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        with self._lock:
            self.bodies.append(body)
        return ExportLogsServiceResponse()

    def records(self) -> int:
        with self._lock:
            return sum(len(sl.log_records) for b in self.bodies
                       for rl in ExportLogsServiceRequest.FromString(b).resource_logs for sl in rl.scope_logs)


@pytest.fixture
def raw() -> Iterator[RawLogsServer]:
    server = RawLogsServer()
    yield server
    server.server.stop(0.5).wait()


def emit(endpoint: str) -> int:
    """Common-shape events of every kind the SDK sends; returns how many records."""
    otel_ml.configure(endpoint=endpoint, protocol="grpc", resource={"service.name": "wire-test"})
    rng = random.Random(4)
    binary = otel_ml.ModelMonitor("fraud", version="3", task="binary", classes=["ok", "fraud"])
    multi = otel_ml.ModelMonitor("iris", version="1", task="multiclass", classes=["a", "b", "c"])
    reg = otel_ml.ModelMonitor("price", task="regression")
    ids = []
    for _ in range(N):
        feats = {"amount": rng.random() * 100, "n": rng.randint(-5, 5), "country": rng.choice(["de", "fr"]),
                 "vip": rng.random() < 0.5}
        ids.append(binary.log_prediction(scores=rng.random(), features=feats, segments={"region": "eu"}))
        multi.log_prediction(scores=[0.2, 0.5, 0.3], features=feats)
        reg.log_pair(rng.uniform(0, 10), rng.uniform(0, 10), features=feats)
    scores = np.asarray([[0.1, 0.6, 0.3]] * N)
    multi.log_predictions(scores=scores, features={"x": np.arange(N, dtype=np.float64)})
    binary.log_labels(ids, ["fraud" if i % 3 else "ok" for i in range(N)])
    assert otel_ml.force_flush(30)
    return 5 * N


def assert_fast_and_equal(bodies: list[bytes]) -> None:
    assert bodies
    for body in bodies:
        for extras in (False, True):
            assert check(body, extras) == (True, 0)


def test_sdk_bytes_take_the_fast_path(raw: RawLogsServer) -> None:
    try:
        n = emit(f"http://127.0.0.1:{raw.port}")
        wait_until(lambda: raw.records() >= n, timeout=30, what="SDK records")
    finally:
        reset()
    assert_fast_and_equal(raw.bodies)


def test_collector_reencoded_bytes_take_the_fast_path(raw: RawLogsServer, tmp_path: Path) -> None:
    collector = Collector(tmp_path, (GATEWAY,), env={"OTEL_ML_PROCESSOR_ENDPOINT": f"127.0.0.1:{raw.port}"}).start()
    try:
        n = emit(f"http://{collector.grpc_endpoint}")
        wait_until(lambda: raw.records() >= n, timeout=60, what="records through the collector")
    finally:
        reset()
        collector.stop()
    assert_fast_and_equal(raw.bodies)
