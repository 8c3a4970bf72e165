"""otel-ml's own exports are invisible to the app's instrumentations; the client metrics can be turned off and fail
loudly once."""

from __future__ import annotations

import logging

import pytest

import otel_ml
from otel_ml.semconv import metrics as m
from tests.support.otlp_sink import METRICS, OtlpSink


def test_grpc_exports_are_not_traced_by_the_apps_grpc_instrumentation(sink: OtlpSink,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    grpc_instrumentation = pytest.importorskip("opentelemetry.instrumentation.grpc")  # in the [test] extra
    import grpc
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    # the app's global tracer provider (what trace.set_tracer_provider sets; undone after the test): the gRPC
    # client instrumentation traces with the global provider
    from opentelemetry import trace

    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    instrumentor = grpc_instrumentation.GrpcInstrumentorClient()
    instrumentor.instrument(tracer_provider=provider)
    try:
        # the instrumentation is live: an app's own call on a new channel is traced
        with grpc.insecure_channel(sink.grpc_endpoint.split("://")[1]) as channel:
            channel.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export")(b"", timeout=5)
        assert len(spans.get_finished_spans()) == 1
        spans.clear()
        otel_ml.configure(endpoint=sink.grpc_endpoint, protocol="grpc", schedule_delay=0.01)
        mon = otel_ml.ModelMonitor("m", task="regression")
        for i in range(20):
            mon.log_prediction(float(i))
        assert otel_ml.force_flush(10)
        assert len(sink.wait_for_log_records(20)) == 20
        assert sink.messages(METRICS)  # logs and metrics both went through instrumented channels
        assert spans.get_finished_spans() == ()
    finally:
        otel_ml.shutdown()
        instrumentor.uninstrument()


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_client_metrics_can_be_turned_off(sink: OtlpSink, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how == "environment":
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.01)
    else:
        otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.01, client_metrics=False)
    otel_ml.ModelMonitor("m", task="regression").log_prediction(1.0)
    assert otel_ml.force_flush(10)
    assert len(sink.wait_for_log_records(1)) == 1
    assert sink.messages(METRICS) == []


def test_client_metrics_switch_is_validated() -> None:
    with pytest.raises(otel_ml.ConfigurationError, match="client_metrics"):
        otel_ml.configure(client_metrics="no")  # type: ignore[typeddict-item]


def test_metrics_endpoint_without_a_metrics_service_warns_once_with_the_fix(
        sink: OtlpSink, caplog: pytest.LogCaptureFixture) -> None:
    sink.fail_next(1000, http_status=404)  # an endpoint that takes no OTLP metrics (and, here, no logs either)
    otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.01)
    with caplog.at_level(logging.WARNING, logger="otel_ml"):
        otel_ml.ModelMonitor("m", task="regression").log_prediction(1.0)
        assert otel_ml.force_flush(10)
        assert otel_ml.force_flush(10)
    warnings = [r.getMessage() for r in caplog.records if m.CLIENT_PREDICTIONS.name.split(".")[1] in r.getMessage()
                and "metrics" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "HTTP 404" in warnings[0] and "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in warnings[0]
    assert "OTEL_METRICS_EXPORTER=none" in warnings[0] and "client_metrics=False" in warnings[0]
