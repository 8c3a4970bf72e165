"""The hand-encoded client-metrics request and the minimal reader agree with opentelemetry-proto's messages."""

from __future__ import annotations

import math
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otel_ml.instrumentation import wire_read
from otel_ml.instrumentation.aggregate import Aggregator
from otel_ml.otlp_values import key_value
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.events import EVENT_SCHEMA_VERSION, INSTRUMENTATION_SCOPE, SCHEMA_VERSION_ATTRIBUTE

RESOURCE = {"service.name": "svc", "service.instance.id": "i-1", "process.pid": 42, "weird": ["a", "b"]}


def _aggregator() -> Aggregator:
    agg = Aggregator()
    agg.start_ns = 1_000
    model = ("fraud", "2")
    for i in range(50):
        agg.record_duration(model, 0.001 * i)
        agg.record_prediction(model, "yes" if i % 3 else "no", i / 50)
    agg.record_prediction(("reg", ""), None, None)
    agg.record_duration(model, 0.5, "ValueError")
    agg.record_error(model, "ValueError")
    agg.exported["fraud"] += 49
    agg.record_drop("fraud", "queue_full", 3)
    agg.add_truncated({("fraud", "too_long"): 2})
    return agg


def _reference(agg: Aggregator, now: int, queue_size: int) -> ExportMetricsServiceRequest:
    """The request built with opentelemetry-proto's classes (what the encoder must equal)."""
    cumulative = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    start = agg.start_ns
    out: list[Any] = []

    def kv(attrs: list[tuple[str, Any]]) -> list[KeyValue]:
        return [key_value(k, v, strict=False) for k, v in attrs if v is not None]

    def model_attrs(model: tuple[str, str]) -> list[tuple[str, Any]]:
        return [(a.ML_MODEL_NAME, model[0]), (a.ML_MODEL_VERSION, model[1])]

    def sums(spec: m.MetricSpec, points: list[tuple[list[tuple[str, Any]], int]]) -> None:
        if points:
            out.append(pb.Metric(name=spec.name, unit=spec.unit, description=spec.doc, sum=pb.Sum(
                aggregation_temporality=cumulative, is_monotonic=True, data_points=[
                    pb.NumberDataPoint(attributes=kv(at), start_time_unix_nano=start, time_unix_nano=now, as_int=v)
                    for at, v in points])))

    def hists(spec: m.MetricSpec, points: list[tuple[list[tuple[str, Any]], Any]]) -> None:
        if points:
            out.append(pb.Metric(name=spec.name, unit=spec.unit, description=spec.doc, histogram=pb.Histogram(
                aggregation_temporality=cumulative, data_points=[pb.HistogramDataPoint(
                    attributes=kv(at), start_time_unix_nano=start, time_unix_nano=now, count=h.count, sum=h.sum,
                    bucket_counts=h.counts, explicit_bounds=list(h.bounds), min=h.min, max=h.max)
                    for at, h in points])))

    hists(m.CLIENT_INFERENCE_DURATION,
          [([*model_attrs(k), (a.ERROR_TYPE, e)], h) for (k, e), h in agg.duration.items()])
    sums(m.CLIENT_PREDICTIONS, [([*model_attrs(k), (a.ML_CLASS, c)], v) for (k, c), v in agg.predictions.items()])
    hists(m.CLIENT_PREDICTION_SCORE, [(model_attrs(k), h) for k, h in agg.score.items()])
    sums(m.CLIENT_INFERENCE_ERRORS, [([*model_attrs(k), (a.ERROR_TYPE, e)], v) for (k, e), v in agg.errors.items()])
    sums(m.CLIENT_EVENTS_EXPORTED, [([(a.ML_MODEL_NAME, n)], v) for n, v in agg.exported.items()])
    sums(m.CLIENT_EVENTS_DROPPED, [([(a.ML_MODEL_NAME, n), (a.ML_REASON, r)], v) for (n, r), v in agg.dropped.items()])
    sums(m.CLIENT_VALUES_TRUNCATED,
         [([(a.ML_MODEL_NAME, n), (a.ML_REASON, r)], v) for (n, r), v in agg.truncated.items()])
    out.append(pb.Metric(name=m.CLIENT_QUEUE_SIZE.name, unit=m.CLIENT_QUEUE_SIZE.unit,
                         description=m.CLIENT_QUEUE_SIZE.doc,
                         gauge=pb.Gauge(data_points=[pb.NumberDataPoint(time_unix_nano=now, as_int=queue_size)])))
    scope = InstrumentationScope(name=INSTRUMENTATION_SCOPE, version="9.9",
                                 attributes=[key_value(SCHEMA_VERSION_ATTRIBUTE, EVENT_SCHEMA_VERSION)])
    return ExportMetricsServiceRequest(resource_metrics=[pb.ResourceMetrics(
        resource=Resource(attributes=[key_value(k, v, strict=False) for k, v in RESOURCE.items()]),
        scope_metrics=[pb.ScopeMetrics(scope=scope, metrics=out)])])


def test_encoded_metrics_request_equals_the_proto_built_one(monkeypatch: pytest.MonkeyPatch) -> None:
    import otel_ml.instrumentation.aggregate as aggregate

    monkeypatch.setattr(aggregate.time, "time_ns", lambda: 123_456_789)
    agg = _aggregator()
    body = agg.export_request(RESOURCE, "9.9", 17)
    decoded = ExportMetricsServiceRequest.FromString(body)
    assert decoded == _reference(agg, 123_456_789, 17)
    # the reader used by ConsoleTransport sees the same points
    points = list(wire_read.metric_points(body))
    assert ("ml.client.queue.size", {}, "value=17") in points
    assert (m.CLIENT_EVENTS_DROPPED.name, {a.ML_MODEL_NAME: "fraud", a.ML_REASON: "queue_full"}, "value=3") in points


def test_partial_success_counts_are_read() -> None:
    logs = ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(rejected_log_records=7,
                                                                              error_message="bad"))
    metrics = ExportMetricsServiceResponse(partial_success=ExportMetricsPartialSuccess(rejected_data_points=3))
    assert wire_read.partial_rejected(logs.SerializeToString()) == 7
    assert wire_read.partial_rejected(metrics.SerializeToString()) == 3
    assert wire_read.partial_rejected(ExportLogsServiceResponse().SerializeToString()) == 0


def test_any_values_round_trip() -> None:
    for value in ["x", "é" * 3, True, False, 0, -5, 2**62, 1.5, -math.inf, ["a", 1.0, True]]:
        av = key_value("k", value).value
        assert wire_read.any_value(av.SerializeToString()) == value
    assert wire_read.any_value(AnyValue().SerializeToString()) is None


@pytest.mark.parametrize("garbage", [b"\x0a\xff", b"\x08", b"\x0f\x00", b"\x0a\x05ab"])
def test_malformed_input_raises_value_error(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        list(wire_read.fields(garbage))
