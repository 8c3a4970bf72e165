"""The processor's own Prometheus scrape endpoint: the MeterProvider's metrics in the collector's names.

Only public OpenTelemetry SDK API: an :class:`~opentelemetry.sdk.metrics.export.InMemoryMetricReader` is collected
on every scrape, and a ``prometheus_client`` collector renders its points. Names come from
:func:`otel_ml.semconv.prometheus.prom_name`, the one translation the dashboards and alert rules use (the collector's
``prometheus`` exporter with ``translation_strategy: UnderscoreEscapingWithSuffixes``), so the endpoint and a
collector in front of the processor expose the same series. Like the collector, every series carries
``otel_scope_name`` / ``otel_scope_version`` / ``otel_scope_schema_url`` labels and the resource is a
``target_info`` series.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from opentelemetry.sdk.metrics.export import (
    CardinalityLimits,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Metric,
    MetricsData,
    Sum,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from otel_ml.semconv.metrics import METRICS
from otel_ml.semconv.prometheus import label_name, prom_name

_ILLEGAL = re.compile(r"[^a-zA-Z0-9_:]+")
_SCOPE_LABELS = ("otel_scope_name", "otel_scope_version", "otel_scope_schema_url")


def _family_name(metric: Metric, monotonic: bool) -> str:
    spec = METRICS.get(metric.name)
    if spec is not None:
        return prom_name(spec)
    name = "_".join(p for p in _ILLEGAL.sub("_", metric.name).split("_") if p)  # not an otel-ml metric
    return f"{name}_total" if monotonic else name


def _label_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _labels(attributes: Mapping[str, Any] | None, scope: tuple[str, str, str]) -> dict[str, str]:
    out = {label_name(k): _label_value(v) for k, v in (attributes or {}).items()}
    out.update(zip(_SCOPE_LABELS, scope, strict=True))
    return out


class MetricsCollector(Collector):
    """A ``prometheus_client`` collector over an in-memory reader (collected at each scrape)."""

    def __init__(self, reader: InMemoryMetricReader, transform: Callable[[MetricsData], MetricsData]) -> None:
        self._reader = reader
        self._transform = transform

    def describe(self) -> list[Any]:
        """Nothing up front (the families depend on what is recorded; no collection at registration)."""
        return []

    def collect(self) -> Iterator[Any]:
        """The metric families of one collection."""
        data = self._reader.get_metrics_data()
        if data is None:
            return
        data = self._transform(data)
        for rm in data.resource_metrics:
            if rm.resource.attributes:
                info = GaugeMetricFamily("target_info", "Target metadata")
                info.add_sample("target_info", {label_name(k): _label_value(v)
                                                for k, v in rm.resource.attributes.items()}, 1.0)
                yield info
            for sm in rm.scope_metrics:
                scope = (sm.scope.name, sm.scope.version or "", sm.scope.schema_url or "")
                for metric in sm.metrics:
                    family = self._family(metric, scope)
                    if family is not None:
                        yield family

    @staticmethod
    def _family(metric: Metric, scope: tuple[str, str, str]) -> Any:
        data = metric.data
        doc = metric.description or metric.name
        if isinstance(data, Sum) and data.is_monotonic:
            name = _family_name(metric, True)
            counter = CounterMetricFamily(name, doc)
            for p in data.data_points:
                counter.add_sample(name, _labels(p.attributes, scope), float(p.value))
            return counter
        if isinstance(data, (Sum, Gauge)):
            name = _family_name(metric, False)
            gauge = GaugeMetricFamily(name, doc)
            for p in data.data_points:
                gauge.add_sample(name, _labels(p.attributes, scope), float(p.value))
            return gauge
        if isinstance(data, Histogram):
            name = _family_name(metric, False)
            hist = HistogramMetricFamily(name, doc)
            for hp in data.data_points:
                labels = _labels(hp.attributes, scope)
                cumulative = 0
                for bound, count in zip([*hp.explicit_bounds, math.inf], hp.bucket_counts, strict=False):
                    cumulative += count
                    hist.add_sample(f"{name}_bucket", {**labels, "le": floatToGoString(bound)}, float(cumulative))
                hist.add_sample(f"{name}_count", labels, float(hp.count))
                hist.add_sample(f"{name}_sum", labels, float(hp.sum))
            return hist
        return None  # exponential histograms: none are produced by the processor


class PrometheusReader(InMemoryMetricReader):
    """A reader to add to the MeterProvider: each scrape of ``registry`` collects it and exposes
    ``transform(collection)``; unregistered from ``registry`` at shutdown."""

    def __init__(self, transform: Callable[[MetricsData], MetricsData], registry: CollectorRegistry,
                 cardinality_limits: CardinalityLimits | None = None) -> None:
        super().__init__(cardinality_limits=cardinality_limits)
        self._registry = registry
        self._collector = MetricsCollector(self, transform)
        registry.register(self._collector)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        """Stop exposing, then shut the reader down."""
        try:
            self._registry.unregister(self._collector)
        except KeyError:  # already unregistered
            pass
        super().shutdown(timeout_millis=timeout_millis, **kwargs)


def prometheus_reader(transform: Callable[[MetricsData], MetricsData],
                      registry: CollectorRegistry | None = None,
                      cardinality_limits: CardinalityLimits | None = None) -> PrometheusReader:
    """A :class:`PrometheusReader` on ``registry`` (default: ``prometheus_client``'s global one, which
    ``start_http_server`` serves)."""
    from prometheus_client import REGISTRY

    return PrometheusReader(transform, REGISTRY if registry is None else registry, cardinality_limits)
