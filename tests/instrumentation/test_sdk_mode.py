"""SDK-integrated mode: events through the application's LoggerProvider, metrics through its MeterProvider.

Events are log records with an ``event_name``, which the OpenTelemetry API has since 1.35: with an older API (the
oldest of scripts/test-otel-matrix.sh) ``mode="sdk"`` is refused at ``configure`` with a clear message instead.
"""

from __future__ import annotations

import importlib
import importlib.metadata

import pytest
from opentelemetry.sdk import _logs as sdk_logs
from opentelemetry.sdk._logs import export as log_export
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import otel_ml
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT

API_VERSION = tuple(int(x) for x in importlib.metadata.version("opentelemetry-api").split(".")[:2])
# the SDK's names by version: LogEmitterProvider / LogProcessor before 1.15, InMemoryLogExporter before 1.39
LoggerProvider = getattr(sdk_logs, "LoggerProvider", None) or sdk_logs.LogEmitterProvider  # type: ignore[attr-defined]
InMemoryExporter = (
    getattr(log_export, "InMemoryLogRecordExporter", None) or getattr(log_export, "InMemoryLogExporter", None)
    or importlib.import_module("opentelemetry.sdk._logs.export.in_memory_log_exporter").InMemoryLogExporter)
SimpleProcessor = getattr(log_export, "SimpleLogRecordProcessor", None) or log_export.SimpleLogProcessor  # type: ignore[attr-defined]


def _providers() -> tuple[object, object, InMemoryMetricReader, MeterProvider]:
    exporter = InMemoryExporter()
    lp = LoggerProvider()
    add = getattr(lp, "add_log_record_processor", None) or lp.add_log_processor  # type: ignore[attr-defined]
    add(SimpleProcessor(exporter))
    reader = InMemoryMetricReader()
    return exporter, lp, reader, MeterProvider(metric_readers=[reader])


@pytest.mark.skipif(API_VERSION < (1, 35), reason="events need opentelemetry-api>=1.35 (the refusal is tested below)")
def test_events_and_metrics_through_the_app_providers() -> None:
    exporter, lp, reader, mp = _providers()
    otel_ml.configure(logger_provider=lp, meter_provider=mp, schedule_delay=0.01)
    mon = otel_ml.ModelMonitor("fraud", version="1", task="binary", classes=["legit", "fraud"])
    with TracerProvider().get_tracer("t").start_as_current_span("infer") as span:
        pid = mon.log_prediction("fraud", scores=0.9, features={"amount": 3.0})
    mon.log_label(pid, "legit")
    assert otel_ml.force_flush(10)
    records = [d.log_record for d in exporter.get_finished_logs()]  # type: ignore[attr-defined]
    assert [r.event_name for r in records] == [ML_PREDICTION_EVENT, ML_LABEL_EVENT]
    assert dict(records[0].attributes or {}) == {
        a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "1", a.ML_TASK: "binary",
        a.ML_PREDICTION_CLASSES: ("legit", "fraud"), a.ML_PREDICTION_ID: pid, a.ML_PREDICTION_VALUE: "fraud",
        a.ML_PREDICTION_SCORE: 0.9, "ml.feature.amount": 3.0}
    assert records[0].trace_id == span.get_span_context().trace_id
    assert dict(records[1].attributes or {}) == {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "1",
                                                 a.ML_PREDICTION_ID: pid, a.ML_LABEL_VALUE: "legit"}
    data = reader.get_metrics_data()
    assert data is not None
    names = {metric.name: metric for rm in data.resource_metrics for sm in rm.scope_metrics
             for metric in sm.metrics}
    (point,) = names[m.CLIENT_PREDICTIONS.name].data.data_points
    assert getattr(point, "value", None) == 1 and dict(point.attributes or {})[a.ML_CLASS] == "fraud"
    assert m.CLIENT_PREDICTION_SCORE.name in names


@pytest.mark.skipif(API_VERSION >= (1, 35), reason="this API emits events (tested above)")
def test_sdk_mode_is_refused_clearly_where_the_api_has_no_events() -> None:
    _, lp, _, mp = _providers()
    with pytest.raises(otel_ml.ConfigurationError, match=r"opentelemetry-api>=1\.35"):
        otel_ml.configure(logger_provider=lp, meter_provider=mp)
    # the default mode works on the same API
    otel_ml.configure(transport=otel_ml.InMemoryTransport(), schedule_delay=0.01)
    otel_ml.ModelMonitor("m", task="regression").log_prediction(1.0)
    assert otel_ml.force_flush(10)
