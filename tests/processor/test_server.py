"""The receivers over real sockets: gRPC (gzip) and OTLP/HTTP answers, overload, store failure, OTLP metric output."""

from __future__ import annotations

import gzip
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from otel_ml.processor import config as cfg
from otel_ml.processor.aggregates import Key
from otel_ml.processor.server import ProcessorApp
from otel_ml.processor.stage import BaseStage, MetricSink, PredictionBatch
from otel_ml.processor.store import MemoryJoinStore
from otel_ml.processor.store.base import StorageError
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import StoreErrorReason
from tests.processor.conftest import label_event, prediction_event
from tests.support import otlp_events as ev

LOOPBACK = {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}


@pytest.fixture
def app_factory() -> Iterator[Any]:
    apps: list[ProcessorApp] = []

    def make(stages: list[Any] | None = None, store: Any = None, **raw: Any) -> ProcessorApp:
        raw.setdefault("receiver", {}).update(LOOPBACK)
        raw.setdefault("metrics", {}).setdefault("otlp", None)
        raw.setdefault("store", {"backend": "memory"})
        app = ProcessorApp(cfg.from_mapping(raw), stages=stages or [], store=store).start()
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop(grace=0.5)


def _post(app: ProcessorApp, body: bytes, headers: Mapping[str, str] | None = None,
          path: str = "/v1/logs") -> tuple[int, bytes, Mapping[str, str]]:
    req = urllib.request.Request(f"http://127.0.0.1:{app.http_port}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/x-protobuf", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def _stub(app: ProcessorApp) -> Any:
    return logs_service_pb2_grpc.LogsServiceStub(grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}"))


MIXED = [prediction_event("a"), prediction_event("bad", value=float("nan"), task="regression"),
         label_event("a"), ev.log_record("app.log", {"x": "y"}), label_event("", value="1")]


def test_grpc_gzip_partial_success(app_factory: Any) -> None:
    app = app_factory()
    resp = _stub(app).Export(ev.request(MIXED), compression=grpc.Compression.Gzip, timeout=30)
    assert resp.partial_success.rejected_log_records == 2
    assert resp.partial_success.error_message.startswith("not_finite")
    agg = app.pipeline.aggregates
    assert agg.value(m.LABELED_PREDICTIONS.name) == 1 and agg.value(m.PROCESSOR_RECORDS_IGNORED.name) == 1
    assert agg.value(m.PROCESSOR_RECORDS_REJECTED.name) == 2
    # a re-sent request is idempotent
    _stub(app).Export(ev.request(MIXED), timeout=30)
    assert agg.value(m.LABELED_PREDICTIONS.name) == 1 and agg.value(m.PREDICTIONS.name) == 1


def test_http_gzip_and_error_answers(app_factory: Any) -> None:
    app = app_factory(receiver={"max_request_bytes": 4096})
    status, body, _ = _post(app, gzip.compress(ev.request(MIXED).SerializeToString()), {"Content-Encoding": "gzip"})
    assert status == 200
    assert ExportLogsServiceResponse.FromString(body).partial_success.rejected_log_records == 2
    assert _post(app, b"\xff\xfe garbage")[0] == 400
    assert _post(app, gzip.compress(b"\xff\xfe garbage"), {"Content-Encoding": "gzip"})[0] == 400
    assert _post(app, b"not gzip at all", {"Content-Encoding": "gzip"})[0] == 400
    assert _post(app, b"x" * 5000)[0] == 413
    assert _post(app, gzip.compress(b"\x00" * 100_000), {"Content-Encoding": "gzip"})[0] == 413  # zip bomb
    assert _post(app, b"{}", {"Content-Type": "application/json"})[0] == 415
    assert _post(app, b"", path="/v1/traces")[0] == 404
    agg = app.pipeline.aggregates
    assert agg.value(m.PROCESSOR_RECORDS_REJECTED.name, {"ml.reason": "decode_error"}) == 3
    assert agg.value(m.PROCESSOR_RECORDS_REJECTED.name, {"ml.reason": "too_large"}) == 2
    assert agg.value(m.LABELED_PREDICTIONS.name) == 1


def test_grpc_too_large_and_garbage_are_counted(app_factory: Any) -> None:
    app = app_factory(receiver={"max_request_bytes": 2048})
    big = ev.request([prediction_event(f"p{i}") for i in range(100)])
    assert big.ByteSize() > 4 * 2048  # beyond grpc's own backstop: refused by grpc, the one uncounted case
    with pytest.raises(grpc.RpcError) as err:
        _stub(app).Export(big, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    just_over = ev.request([prediction_event(f"q{i}") for i in range(30)])
    assert 2048 < just_over.ByteSize() <= 4 * 2048  # below grpc's own backstop: the processor refuses and counts
    with pytest.raises(grpc.RpcError) as err:
        _stub(app).Export(just_over, timeout=30, compression=grpc.Compression.Gzip)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
        raw = channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")
        with pytest.raises(grpc.RpcError) as err:
            raw(b"\xff\xfe garbage", timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ok = _stub(app).Export(ev.request(MIXED), timeout=30)
    assert ok.partial_success.rejected_log_records == 2
    agg = app.pipeline.aggregates
    assert agg.value(m.PROCESSOR_RECORDS_REJECTED.name, {"ml.reason": "too_large"}) == 1
    assert agg.value(m.PROCESSOR_RECORDS_REJECTED.name, {"ml.reason": "decode_error"}) == 1
    assert agg.value(m.LABELED_PREDICTIONS.name) == 1


class BlockingStage(BaseStage):
    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def on_predictions(self, batch: PredictionBatch, sink: MetricSink) -> None:
        self.entered.set()
        self.release.wait(30)


def test_overload_answers_retryable_codes(app_factory: Any) -> None:
    stage = BlockingStage()
    app = app_factory(stages=[stage], receiver={"max_inflight_requests": 1, "retry_after": 3})
    pool = futures.ThreadPoolExecutor(1)
    first = pool.submit(_stub(app).Export, ev.request([prediction_event("slow")]), timeout=30)
    assert stage.entered.wait(30)
    with pytest.raises(grpc.RpcError) as err:
        _stub(app).Export(ev.request([prediction_event("x")]), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    status, _, headers = _post(app, ev.request([prediction_event("y")]).SerializeToString())
    assert status == 503 and headers["Retry-After"] == "3"
    stage.release.set()
    first.result(30)
    assert app.pipeline.aggregates.value(m.PROCESSOR_REQUESTS_REFUSED.name) == 2
    assert _post(app, ev.request([prediction_event("y")]).SerializeToString())[0] == 200


class FlakyStore(MemoryJoinStore):
    def __init__(self) -> None:
        super().__init__(86400.0, 1000)
        self.fail = 1

    def commit(self, totals: Mapping[Key, float]) -> None:
        if self.fail:  # what a backend raises for a storage failure (the store contract), once
            self.fail -= 1
            raise StorageError(StoreErrorReason.FULL, "disk full")
        super().commit(totals)


def test_commit_failure_is_retryable_and_loses_nothing(app_factory: Any) -> None:
    store = FlakyStore()
    app = app_factory(store=store)
    req = ev.request([prediction_event("a"), label_event("a")])
    with pytest.raises(grpc.RpcError) as err:
        _stub(app).Export(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert app.pipeline.aggregates.value(m.LABELED_PREDICTIONS.name) == 0
    _stub(app).Export(req, timeout=30)  # the sender's retry
    assert app.pipeline.aggregates.value(m.LABELED_PREDICTIONS.name) == 1


class MetricsSink(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []

    def Export(self, request: ExportMetricsServiceRequest, context: Any) -> ExportMetricsServiceResponse:
        self.requests.append(request)
        return ExportMetricsServiceResponse()


def test_otlp_metric_output_is_cumulative_with_resource(app_factory: Any) -> None:
    sink = MetricsSink()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(sink, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        app = app_factory(instance_id="replica-z",
                          metrics={"otlp": {"endpoint": f"http://127.0.0.1:{port}", "interval": "1s"}})
        _stub(app).Export(ev.request([prediction_event("a"), label_event("a", value="0")]), timeout=30)
        deadline = time.monotonic() + 20
        found: dict[str, Any] = {}
        while time.monotonic() < deadline and not {"ml.labeled_predictions", "ml.label.delay"} <= set(found):
            time.sleep(0.3)
            for req in list(sink.requests):
                for rm in req.resource_metrics:
                    res = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            found[metric.name] = (res, metric)
        assert sink.requests, "no OTLP metric export arrived"
        assert "ml.labeled_predictions" in found, sorted(found)
        res, labeled = found["ml.labeled_predictions"]
        assert res["service.name"] == "otel-ml-processor" and res["service.instance.id"] == "replica-z"
        assert labeled.sum.is_monotonic and labeled.sum.aggregation_temporality == 2
        assert labeled.sum.data_points[0].as_double == 1.0
        _, delay = found["ml.label.delay"]
        point = delay.histogram.data_points[0]
        assert point.count == 1 and point.sum == pytest.approx(60.0) and delay.histogram.aggregation_temporality == 2
        assert list(point.explicit_bounds) == list(m.LABEL_DELAY.buckets)
    finally:
        server.stop(0)


def test_unexpected_exceptions_get_a_correct_bounded_answer_and_are_counted(app_factory: Any,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No exception escapes a receiver: gRPC INTERNAL (never UNKNOWN), HTTP 500 with a google.rpc.Status body (never a
    dropped connection), messages bounded to 512 bytes, counted in requests.failed{internal_error}; the next request
    is served."""
    from google.rpc import status_pb2

    from otel_ml.processor.ingest import Ingest

    app = app_factory()
    real = Ingest.decode

    def broken(self: Ingest, body: bytes) -> Any:
        raise RuntimeError("boom " + "x" * 5000)

    monkeypatch.setattr(Ingest, "decode", broken)
    with pytest.raises(grpc.RpcError) as err:
        _stub(app).Export(ev.request([prediction_event("a")]), timeout=30)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details().startswith("internal error: RuntimeError: boom") and len(err.value.details()) <= 512
    status, body, headers = _post(app, ev.request([prediction_event("b")]).SerializeToString())
    assert status == 500 and headers["Content-Type"] == "application/x-protobuf"
    message = status_pb2.Status.FromString(body).message
    assert message.startswith("internal error: RuntimeError") and len(message.encode()) <= 512
    agg = app.pipeline.aggregates
    for receiver in ("grpc", "http"):
        labels = {"ml.reason": "internal_error", "ml.receiver": receiver}
        assert agg.value(m.PROCESSOR_REQUESTS_FAILED.name, labels) == 1
    monkeypatch.setattr(Ingest, "decode", real)
    assert _post(app, ev.request([prediction_event("c")]).SerializeToString())[0] == 200
    _stub(app).Export(ev.request([prediction_event("d")]), timeout=30)
    assert agg.value(m.PREDICTIONS.name) == 2
    assert app.admission.inflight == 0


def test_refusals_are_counted_by_reason(app_factory: Any) -> None:
    app = app_factory()
    app.ingest.close()  # shutting down: retryable, before anything is read
    with pytest.raises(grpc.RpcError) as err:
        _stub(app).Export(ev.request([prediction_event("a")]), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    status, _, headers = _post(app, ev.request([prediction_event("a")]).SerializeToString())
    assert status == 503 and headers["Retry-After"] == "1"
    agg = app.pipeline.aggregates
    for receiver in ("grpc", "http"):
        labels = {"ml.reason": "shutting_down", "ml.receiver": receiver}
        assert agg.value(m.PROCESSOR_REQUESTS_REFUSED.name, labels) == 1
