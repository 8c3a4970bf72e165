"""Overload and failure: a stalled or failing receiver never slows the caller; memory is bounded; drops counted;
retryable codes are retried with backoff."""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable

import grpc
import pytest

import otel_ml
from otel_ml.instrumentation.export_queue import ExportQueue
from otel_ml.instrumentation.state import STATE
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from tests.support.otlp_sink import OtlpSink


def _median_call_ns(call: Callable[[], object], n: int) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples)


def _dropped(sink: OtlpSink) -> dict[str, int]:
    return {p[0][a.ML_REASON]: p[1].as_int for p in sink.metric_points(m.CLIENT_EVENTS_DROPPED.name)}


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_stalled_receiver_bounded_memory_counted_drops(sink: OtlpSink, protocol: str) -> None:
    endpoint = sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint
    queue_size = 2000
    otel_ml.configure(endpoint=endpoint, protocol=protocol, queue_size=queue_size, batch_size=500,
                      schedule_delay=0.01, timeout=30, metric_interval=600)
    mon = otel_ml.ModelMonitor("m", version="1", task="binary", classes=["n", "p"])
    feats = {"a": 1.0, "b": "x", "c": 3}
    # baseline caller cost with a healthy receiver (a tight loop outruns the worker: some drops already)
    n = 20_000
    healthy = _median_call_ns(lambda: mon.log_prediction("p", scores=0.7, features=feats), n)
    assert otel_ml.force_flush(30)

    sink.stall()
    export_queue = STATE.queue
    assert isinstance(export_queue, ExportQueue)
    deadline = time.monotonic() + 10
    probes = 0
    while sink.stalled_requests == 0 and time.monotonic() < deadline:  # until the worker is stuck in an export
        mon.log_prediction("p")
        probes += 1
        time.sleep(0.001)
    assert sink.stalled_requests >= 1
    stalled = _median_call_ns(lambda: mon.log_prediction("p", scores=0.7, features=feats), n)
    tracemalloc.start()
    for _ in range(n):
        mon.log_prediction("p", scores=0.7, features=feats)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(export_queue.queue) <= queue_size
    assert peak < 2_000_000, f"caller-side allocations grew to {peak} bytes"
    assert stalled < 3 * healthy + 2_000, (stalled, healthy)  # median ns per call: the caller is not slowed
    sink.release()
    assert otel_ml.force_flush(30)
    dropped = _dropped(sink)
    exported = {p[0][a.ML_MODEL_NAME]: p[1].as_int for p in sink.metric_points(m.CLIENT_EVENTS_EXPORTED.name)}
    received = len(sink.log_records())
    assert dropped["queue_full"] >= n - queue_size  # the stalled loop alone overflowed the bound
    assert exported["m"] == received
    assert received + dropped["queue_full"] == 3 * n + probes  # every event is either delivered or counted


def test_http_retry_after_is_honoured(sink: OtlpSink) -> None:
    otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.01, metric_interval=600, max_retry=10)
    sink.fail_next(2, http_status=503, retry_after="0.3")
    mon = otel_ml.ModelMonitor("m", task="regression")
    t0 = time.monotonic()
    mon.log_prediction(1.0)
    records = sink.wait_for_log_records(1, timeout=10)
    assert time.monotonic() - t0 >= 0.6  # two Retry-After waits
    assert len(records) == 1


def test_grpc_unavailable_is_retried(sink: OtlpSink) -> None:
    otel_ml.configure(endpoint=sink.grpc_endpoint, protocol="grpc", schedule_delay=0.01, metric_interval=600,
                      max_retry=10)
    sink.fail_next(3, grpc_code=grpc.StatusCode.UNAVAILABLE)
    otel_ml.ModelMonitor("m", task="regression").log_prediction(1.0)
    assert len(sink.wait_for_log_records(1, timeout=10)) == 1


def test_non_retryable_error_drops_and_counts(sink: OtlpSink) -> None:
    otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.01, metric_interval=600)
    sink.fail_next(1, http_status=400)
    mon = otel_ml.ModelMonitor("m", task="regression")
    mon.log_prediction(1.0)
    time.sleep(0.3)
    mon.log_prediction(2.0)
    assert otel_ml.force_flush(10)
    records = sink.wait_for_log_records(1)
    assert [r.attributes[a.ML_PREDICTION_VALUE] for r in records] == [2.0]
    assert _dropped(sink) == {"export_failed": 1}


def test_endpoint_down_shutdown_respects_timeout() -> None:
    from tests.support.procs import free_port

    otel_ml.configure(endpoint=f"http://127.0.0.1:{free_port()}", schedule_delay=0.01, max_retry=60)
    mon = otel_ml.ModelMonitor("m", task="regression")
    t0 = time.perf_counter()
    for _ in range(1000):
        mon.log_prediction(1.0)
    assert time.perf_counter() - t0 < 1.0
    t0 = time.monotonic()
    otel_ml.shutdown(1.0)
    assert time.monotonic() - t0 < 3.0


def test_flush_and_metrics_progress_under_a_producer_faster_than_the_worker(sink: OtlpSink) -> None:
    import threading

    otel_ml.configure(endpoint=sink.http_endpoint, queue_size=5000, schedule_delay=0.01, metric_interval=0.2)
    mon = otel_ml.ModelMonitor("m", task="regression")
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            mon.log_prediction(1.0, features={"a": 1.0, "b": 2.0})

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        assert otel_ml.force_flush(20)
        assert time.monotonic() - t0 < 20
        deadline = time.monotonic() + 10
        while not sink.metric_points(m.CLIENT_EVENTS_EXPORTED.name) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sink.metric_points(m.CLIENT_EVENTS_EXPORTED.name)
    finally:
        stop.set()
        producer.join()
