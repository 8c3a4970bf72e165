"""Configuration: environment variables, no-op defaults, global resource, definition-time errors."""

from __future__ import annotations

import logging
import threading

import pytest
from opentelemetry.sdk.resources import Resource

import otel_ml
from otel_ml.instrumentation.config import build_settings, default_resource, global_resource, parse_headers
from otel_ml.instrumentation.export_queue import ExportQueue
from otel_ml.instrumentation.state import STATE
from tests.support.otlp_sink import OtlpSink


def _worker_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "otel-ml-worker")


def test_nothing_configured_is_a_silent_cheap_noop(caplog: pytest.LogCaptureFixture) -> None:
    before = _worker_threads()
    mon = otel_ml.ModelMonitor("m", version="1", task="regression")
    with caplog.at_level(logging.DEBUG, logger="otel_ml"):
        pid = mon.log_prediction(1.0, features={"x": 1})
        ids = mon.log_predictions([1.0, 2.0])
        mon.log_label(pid, 2.0)
    assert isinstance(pid, str) and len(ids) == 2
    assert STATE.queue is not None and not STATE.queue.active
    assert _worker_threads() == before
    assert caplog.records == []


def test_sdk_disabled_wins(monkeypatch: pytest.MonkeyPatch, sink: OtlpSink) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.http_endpoint)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    otel_ml.ModelMonitor("m", task="regression").log_prediction(1.0)
    assert STATE.queue is not None and not STATE.queue.active


def test_environment_configures_the_exporter(monkeypatch: pytest.MonkeyPatch, sink: OtlpSink) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.grpc_endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s%20ecret,x-team=ml")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "scorer")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=prod")
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "50")
    otel_ml.ModelMonitor("m", task="regression").log_prediction(1.0)
    assert otel_ml.force_flush(10)
    (rec,) = sink.wait_for_log_records(1)
    assert rec.resource["service.name"] == "scorer"
    assert rec.resource["deployment.environment.name"] == "prod"
    req = sink.requests[0]
    assert req.transport == "grpc" and req.headers["api-key"] == "s ecret" and req.headers["x-team"] == "ml"


def test_signal_specific_endpoints_are_used_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://logs:9999/custom/logs")
    s = build_settings(explicit=False)
    assert s.mode == "otlp" and s.protocol == "http/protobuf"
    assert s.logs_endpoint == "http://logs:9999/custom/logs"
    assert s.metrics_endpoint == "http://collector:4318/v1/metrics"


def test_bad_environment_values_warn_and_fall_back(monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")
    monkeypatch.setenv("OTEL_BLRP_MAX_QUEUE_SIZE", "-5")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "novalue,ok=1")
    with caplog.at_level(logging.WARNING):
        s = build_settings(explicit=False)
    assert (s.protocol, s.compression, s.timeout_s, s.queue_size) == ("http/protobuf", "none", 10.0, 8192)
    assert s.headers == {"ok": "1"}
    text = caplog.text
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TIMEOUT",
                 "OTEL_BLRP_MAX_QUEUE_SIZE", "novalue"):
        assert name in text


def test_resource_from_the_environment_without_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=ignored,team=r%C3%A9sk, k8s.pod.name = p-1 ,bad")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "scorer")
    res = default_resource()
    assert res["service.name"] == "scorer" and res["team"] == "résk" and res["k8s.pod.name"] == "p-1"
    assert "bad" not in res
    monkeypatch.delenv("OTEL_SERVICE_NAME")
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES")
    assert default_resource()["service.name"] == "unknown_service"


def test_parse_headers() -> None:
    assert parse_headers("A=1, b = two%3D2 ,,") == {"a": "1", "b": "two=2"}


def test_global_sdk_resource_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    assert global_resource() is None  # nothing configured: proxies have no resource
    provider = TracerProvider(resource=Resource.create({"service.name": "app-svc", "team": "risk"}))
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)  # what trace.set_tracer_provider sets, undone after
    assert global_resource() is not None
    s = build_settings(endpoint="http://127.0.0.1:4318")
    assert s.resource["service.name"] == "app-svc" and s.resource["team"] == "risk"
    explicit = build_settings(endpoint="http://127.0.0.1:4318", resource={"service.name": "mine"})
    assert explicit.resource["service.name"] == "mine"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"protocol": "udp"}, "protocol must be one of"),
    ({"mode": "turbo"}, "mode must be one of"),
    ({"queue_size": 0}, "queue_size must be a positive int"),
    ({"endpoint": "ftp://x"}, "endpoint must be an http(s)://host:port URL"),
    ({"resource": 3}, "resource must be a mapping"),
])
def test_configure_rejects_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(otel_ml.ConfigurationError, match="example") as info:
        otel_ml.configure(**kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_configure_rejects_unknown_options_like_a_keyword_argument() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['endpiont'\].*'endpoint'"):
        otel_ml.configure(endpiont="http://127.0.0.1:4318")  # type: ignore[call-arg]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "", "task": "binary"}, "name must be a non-empty string"),
    ({"name": "m", "task": "clustering"}, "task must be one of"),
    ({"name": "m", "task": "binary", "classes": ["a", "b", "c"]}, "exactly 2 classes"),
    ({"name": "m", "task": "multiclass", "classes": ["a", "a"]}, "distinct"),
    ({"name": "m", "task": "regression", "classes": ["a"]}, "do not apply"),
    ({"name": "m", "task": "binary", "classes": ["n", "p"], "positive_class": "x"}, "positive_class"),
    ({"name": "m", "task": "binary", "feature_sample_rate": 1.5}, "feature_sample_rate"),
    ({"name": "m", "task": "binary", "features": "amount"}, "features must be a list"),
    ({"name": "m", "version": 3, "task": "binary"}, "version must be a string"),
])
def test_model_monitor_rejects_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    name = kwargs.pop("name")
    with pytest.raises(otel_ml.ConfigurationError, match=r"example: otel_ml\.ModelMonitor") as info:
        otel_ml.ModelMonitor(name, **kwargs)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_decorator_rejects_invalid_arguments_at_definition() -> None:
    mon = otel_ml.ModelMonitor("m", task="regression")
    with pytest.raises(otel_ml.ConfigurationError, match="not a parameter") as info:
        @mon.instrument(features="payload")
        def predict(x: float) -> float:
            return x
    assert "example: @monitor.instrument" in str(info.value)
    with pytest.raises(otel_ml.ConfigurationError, match="must be None, a callable"):
        mon.instrument(scores=3)  # type: ignore[call-overload]
    with pytest.raises(otel_ml.ConfigurationError, match="needs a function"):
        mon.instrument(42)  # type: ignore[call-overload]
    with pytest.raises(otel_ml.ConfigurationError, match="has no task"):
        otel_ml.ModelMonitor("labels-only").instrument(lambda x: x)


def test_configure_replaces_and_shutdown_stops(sink: OtlpSink) -> None:
    otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=10)
    first = STATE.queue
    otel_ml.ModelMonitor("m", task="regression").log_prediction(1.0)
    otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=10)
    assert isinstance(first, ExportQueue) and first._stopped
    assert len(sink.wait_for_log_records(1)) == 1  # the replaced export queue flushed on shutdown
    assert otel_ml.shutdown(5)
    assert STATE.queue is not None and not STATE.queue.active


def test_otlp_values_strict_raises_and_lenient_stringifies() -> None:
    from otel_ml.otlp_values import any_value

    assert any_value({"k": [1, 2.5, True, b"x"]}).kvlist_value.values[0].value.array_value.values[3].bytes_value == b"x"
    with pytest.raises(TypeError, match="unsupported attribute value"):
        any_value(object())
    assert any_value(None, strict=False).string_value == "None"
