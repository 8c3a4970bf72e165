"""Prometheus names of the processor's own scrape endpoint equal the collector's (otel_ml.semconv.prometheus)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from otel_ml.processor import config as cfg
from otel_ml.processor.aggregates import Aggregates, Capper, Step
from otel_ml.processor.export import HistogramInjector, MetricsOutput, processor_metrics, prometheus_reader
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
