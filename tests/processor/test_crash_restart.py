"""kill -9 of a real processor mid-stream, restart, re-send what was not acknowledged: totals equal the truth."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc

from otel_ml.semconv import metrics as m
from otel_ml.semconv.prometheus import prom_name
from tests.processor.conftest import label_event, prediction_event
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev

pytestmark = pytest.mark.integration

N_REQUESTS = 120
PER_REQUEST = 50


def _requests() -> tuple[list[bytes], int, int]:
    """Requests of predictions and the labels of the previous request's predictions; the truth counts."""
    out, total, correct = [], 0, 0
    for r in range(N_REQUESTS):
        recs = []
        for j in range(PER_REQUEST):
            i = r * PER_REQUEST + j
            recs.append(prediction_event(f"p{i}", task="multiclass", value=str(i % 3)))
            if r > 0:
                k = i - PER_REQUEST
                truth = str(k % 3) if k % 4 else str((k + 1) % 3)
                recs.append(label_event(f"p{k}", value=truth))
                total += 1
                correct += int(truth == str(k % 3))
        out.append(ev.request(recs).SerializeToString())
    return out, total, correct


def _send(port: int, body: bytes) -> bool:
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        try:
            logs_service_pb2_grpc.LogsServiceStub(ch).Export(ExportLogsServiceRequest.FromString(body), timeout=10)
            return True
        except grpc.RpcError:
            return False


def test_kill9_midstream_then_restart_and_resend(tmp_path: Path) -> None:
    bodies, labeled_truth, correct_truth = _requests()
    proc = ProcessorProcess(tmp_path).start()
    acked: set[int] = set()
    lock = threading.Lock()

    def sender(worker: int) -> None:
        for idx in range(worker, N_REQUESTS, 4):
            if _send(proc.grpc_port, bodies[idx]):
                with lock:
                    acked.add(idx)

    threads = [threading.Thread(target=sender, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < N_REQUESTS // 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.process.kill9()  # mid-stream: requests are in flight
    for t in threads:
        t.join(60)
    assert N_REQUESTS // 3 <= len(acked) < N_REQUESTS, len(acked)

    proc.start()  # same store, same instance_id
    # the collector's retry: every request that was not acknowledged, plus some that were (duplicates)
    for idx in range(N_REQUESTS):
        if idx not in acked or idx % 5 == 0:
            assert _send(proc.grpc_port, bodies[idx])
    total = N_REQUESTS * PER_REQUEST
    assert proc.total(prom_name(m.PREDICTIONS)) == total
    assert proc.total(prom_name(m.LABELS)) == labeled_truth
    assert proc.total(prom_name(m.LABELED_PREDICTIONS)) == labeled_truth
    assert proc.total(prom_name(m.CORRECT_PREDICTIONS)) == correct_truth
    assert proc.total(prom_name(m.PROCESSOR_JOINS)) == labeled_truth
    assert proc.total(prom_name(m.PROCESSOR_STORE_PENDING)) <= PER_REQUEST  # the last request's predictions
    assert proc.process.stop() == 0  # SIGTERM: graceful shutdown, exit status 0
    proc.start()  # and once more: the counters continue where they were
    assert proc.total(prom_name(m.LABELED_PREDICTIONS)) == labeled_truth
    assert proc.process.stop() == 0
