"""Prometheus names of the processor's own scrape endpoint equal the collector's (otel_ml.semconv.prometheus)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from otel_ml.processor import config as cfg
from otel_ml.processor.aggregates import Aggregates, Capper, Step
from otel_ml.processor.export import HistogramInjector, MetricsOutput, processor_metrics
from otel_ml.processor.prometheus_exposition import prometheus_reader
from otel_ml.semconv import metrics as m
from otel_ml.semconv.prometheus import label_name, prom_name


def test_every_processor_metric_has_the_collector_prometheus_name() -> None:
    agg = Aggregates()
    step = Step(Capper(100))
    for spec in processor_metrics():
        attrs = {k: "v" for k in spec.attributes}
        if spec.instrument in ("counter", "updowncounter"):
            step.add(spec, 2.0, attrs)
        elif spec.instrument == "gauge":
            step.set_gauge(spec, 0.5, attrs)
        else:
            step.record_many(spec, np.array([0.5, 2.0]), step.attrs(attrs))
    agg.apply(agg.totals_for(step.deltas), step.gauges)
    registry = CollectorRegistry()
    out = MetricsOutput(cfg.from_mapping({"metrics": {"otlp": None}}), agg,
                        extra_readers=[prometheus_reader(HistogramInjector(agg, 0), registry)])
    try:
        text = generate_latest(registry).decode()
    finally:
        out.shutdown()
    families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for spec in processor_metrics():
        want = prom_name(spec)
        family = want if want in families else want.removesuffix("_total")  # TYPE line naming varies by version
        assert family in families, f"{spec.name}: expected {want}, exposed {sorted(families)}"
        expected_type = {"counter": "counter", "updowncounter": "gauge", "gauge": "gauge",
                         "histogram": "histogram"}[spec.instrument]
        assert families[family] == expected_type, spec.name
        series = f"{want}_bucket" if spec.instrument == "histogram" else want
        line = next(ln for ln in text.splitlines() if ln.startswith(series + "{"))
        for key in spec.attributes:
            assert f'{label_name(key)}="v"' in line, (spec.name, key, line)


def test_failed_otlp_exports_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.procs import free_port, wait_until

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    agg = Aggregates({("ml.processor.joins", ()): 1.0})  # something to export
    closed = free_port()  # nothing listens there
    out = MetricsOutput(cfg.from_mapping({"metrics": {"otlp": {"endpoint": f"http://127.0.0.1:{closed}",
                                                               "interval": "0.5s"}}}), agg)
    try:
        wait_until(lambda: agg.value("ml.processor.export.failures") >= 1, timeout=30, what="an export failure")
    finally:
        out.provider.shutdown(timeout_millis=1000)


def _label_delay_aggregates() -> Aggregates:
    agg = Aggregates({("ml.processor.joins", ()): 3.0})
    step = Step(Capper(100))
    spec = m.LABEL_DELAY
    step.record_many(spec, np.array([0.5, 2.0, 1e9]), step.attrs({k: "x" for k in spec.attributes}))
    agg.apply(agg.totals_for(step.deltas), step.gauges)
    return agg


def test_prometheus_histograms_are_cumulative_and_unexposed_after_shutdown() -> None:
    agg = _label_delay_aggregates()
    registry = CollectorRegistry()
    out = MetricsOutput(cfg.from_mapping({"metrics": {"otlp": None}}), agg,
                        extra_readers=[prometheus_reader(HistogramInjector(agg, 0), registry)])
    try:
        families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    finally:
        out.shutdown()
    base = prom_name(m.LABEL_DELAY)
    samples = {(s.name, s.labels.get("le")): s.value for s in families[base].samples}
    bounds = m.LABEL_DELAY.buckets
    assert samples[(f"{base}_bucket", "1.0")] == 1                     # 0.5
    assert samples[(f"{base}_bucket", floatToGoString(bounds[1]))] == 2  # 0.5, 2.0 (cumulative)
    assert samples[(f"{base}_bucket", floatToGoString(bounds[-1]))] == 2
    assert samples[(f"{base}_bucket", "+Inf")] == 3 == samples[(f"{base}_count", None)]
    assert samples[(f"{base}_sum", None)] == 0.5 + 2.0 + 1e9
    assert "target_info" in families
    assert generate_latest(registry) == b""  # the reader unregistered itself at shutdown


def test_otlp_metrics_are_cumulative_whatever_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.otlp_sink import OtlpSink

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    agg = Aggregates({("ml.processor.joins", ()): 3.0})
    with OtlpSink(http_enabled=False) as sink:
        out = MetricsOutput(cfg.from_mapping({"metrics": {"otlp": {"endpoint": sink.grpc_endpoint,
                                                                   "interval": "1h"}}}), agg)
        try:
            assert out.force_flush(10_000)
            assert out.force_flush(10_000)  # a second collection: delta would export 0 here
        finally:
            out.shutdown()
        points = sink.metric_points(m.PROCESSOR_JOINS.name)
    assert points and points[0][1].as_double == 3.0
    cumulative = 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
    for req in sink.messages("metrics"):
        for metric in (x for rm in req.resource_metrics for sm in rm.scope_metrics for x in sm.metrics):
            if metric.WhichOneof("data") in ("sum", "histogram"):
                assert getattr(metric, metric.WhichOneof("data")).aggregation_temporality == cumulative, metric.name


def test_sdk_cardinality_limit_from_config_and_its_overflow_counted() -> None:
    """The readers get ``2 x metrics.series_limit`` per instrument (not the SDK's default 2000); series the SDK still
    folds into its ``otel.metric.overflow`` point are counted in ``ml.processor.series.overflow``."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from otel_ml.processor.export import sdk_cardinality_limits
    from otel_ml.semconv import attributes as a

    config = cfg.from_mapping({"metrics": {"otlp": None, "series_limit": 100}})
    limits = sdk_cardinality_limits(config)
    assert set(limits.values()) == {200}
    agg = Aggregates({(m.PREDICTIONS.name, ((a.ML_CLASS, f"c{i}"), (a.ML_MODEL_NAME, "m"))): 1.0 for i in range(250)})
    reader = InMemoryMetricReader(cardinality_limits=limits)
    out = MetricsOutput(config, agg, extra_readers=[reader])
    try:
        first = reader.get_metrics_data()
        assert first is not None
        out.inject(first)  # what both configured readers do with every collection
        assert out.overflow.folded == 50
        second = reader.get_metrics_data()
        assert second is not None
        gauge = next(x for rm in second.resource_metrics for sm in rm.scope_metrics for x in sm.metrics
                     if x.name == m.PROCESSOR_SERIES_OVERFLOW.name)
        assert [p.value for p in gauge.data.data_points] == [50.0]
        points = next(x for rm in first.resource_metrics for sm in rm.scope_metrics for x in sm.metrics
                      if x.name == m.PREDICTIONS.name).data.data_points
        assert len(points) == 201 and sum(p.value for p in points) == 250  # folded, not lost
    finally:
        out.provider.shutdown(timeout_millis=1000)
