"""Metric output: OTel SDK MeterProvider over the committed aggregates -> OTLP (and optionally a Prometheus endpoint).

* Counters and up-down counters are ``Observable*`` instruments whose callbacks read the committed
  :class:`~otel_ml.processor.aggregates.Aggregates` mirror (cumulative; restored at start, so a restarted processor
  with the same ``instance_id`` continues its series).
* Gauges (ROC-AUC, drift, self-telemetry) are ``ObservableGauge`` callbacks over the mirror's gauges and live values.
* Histograms (``ml.label.delay``, ``ml.multilabel.predicted_labels``) are not SDK ``Histogram`` instruments (one
  ``record`` costs ~16 µs, a third of the per-event budget): the pipeline keeps cumulative bucket counts in the
  aggregates (durable too), and :class:`HistogramInjector` appends them as cumulative OTLP histogram points to every
  collection before it reaches the OTLP exporter or the Prometheus collector.

Resource: ``service.name=otel-ml-processor``, ``service.instance.id=<instance_id>``. Temporality: cumulative.
"""

from __future__ import annotations

import base64
import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    Counter,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    CardinalityLimits,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from otel_ml.processor.aggregates import Aggregates, Attrs, Key
from otel_ml.processor.config import OtlpMetricsConfig, ProcessorConfig
from otel_ml.processor.prometheus_exposition import prometheus_reader
from otel_ml.processor.redact import redact
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.events import INSTRUMENTATION_SCOPE
from otel_ml.semconv.metrics import METRICS, MetricSpec

_logger = logging.getLogger(__name__)
SERVICE_NAME = "otel-ml-processor"
SCOPE_NAME = f"{INSTRUMENTATION_SCOPE}.processor"

LiveGauges = dict[str, Callable[[], float]]
"""Gauges read live at collection time (queue depth), by metric name."""


def processor_metrics() -> list[MetricSpec]:
    """Every metric the processor (and its stages) can export."""
    return [spec for spec in METRICS.values() if spec.source == "processor"]


def histogram_points(aggregates: Aggregates, spec: MetricSpec, start_ns: int, now_ns: int) -> list[HistogramDataPoint]:
    """Cumulative histogram points of ``spec`` from the aggregates' bucket pseudo-metrics."""
    counts: dict[Attrs, list[int]] = {}
    n_buckets = len(spec.buckets) + 1
    for i in range(n_buckets):
        for attrs, value in aggregates.snapshot(f"{spec.name}|b{i}"):
            counts.setdefault(attrs, [0] * n_buckets)[i] = int(value)
    sums = dict(aggregates.snapshot(f"{spec.name}|sum"))
    totals = dict(aggregates.snapshot(f"{spec.name}|count"))
    return [HistogramDataPoint(
        attributes=dict(attrs), start_time_unix_nano=start_ns, time_unix_nano=now_ns, count=int(totals.get(attrs, 0)),
        sum=sums.get(attrs, 0.0), bucket_counts=bucket_counts, explicit_bounds=list(spec.buckets),
        min=None, max=None,  # type: ignore[arg-type] # not tracked; optional in OTLP, unused by Prometheus
    ) for attrs, bucket_counts in counts.items()]


SDK_HEADROOM: Final = 2
"""The SDK's per-instrument cardinality limit is this times ``metrics.series_limit``: the processor folds beyond
``series_limit`` itself, and the SDK keeps an attribute set it has seen until the process ends (also after the
processor retired the series), so the headroom absorbs that churn."""


def sdk_cardinality_limits(config: ProcessorConfig) -> CardinalityLimits:
    """The readers' ``cardinality_limits`` (``MetricReader(cardinality_limits=...)``, public SDK API) for every
    instrument class the processor creates, from the config (the SDK's default is 2000 per instrument)."""
    limit = SDK_HEADROOM * config.metrics.series_limit
    return {cls: limit for cls in (Counter, UpDownCounter, HistogramInstrument, ObservableCounter,
                                   ObservableUpDownCounter, ObservableGauge)}


class SeriesOverflow:
    """Counts the series the SDK folded into its ``otel.metric.overflow`` point at the last collection.

    The observable callbacks record how many points they returned (:meth:`observed`); a collection holding an
    overflow point for a metric exported ``len(points) - 1`` of them, the rest were folded.
    """

    def __init__(self) -> None:
        self._observed: dict[str, int] = {}
        self.folded = 0

    def observed(self, name: str, n: int) -> None:
        """A callback of ``name`` returned ``n`` points."""
        self._observed[name] = n

    def scan(self, data: MetricsData) -> None:
        """Set :attr:`folded` from a collection."""
        folded = 0
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points = getattr(metric.data, "data_points", ())
                    if any((p.attributes or {}).get(a.OTEL_METRIC_OVERFLOW) for p in points):
                        folded += max(self._observed.get(metric.name, 0) - (len(points) - 1), 1)
        if folded and not self.folded:
            _logger.warning("the OpenTelemetry SDK folded %d series into otel.metric.overflow points (raise "
                            "metrics.series_limit, or restart to release the attribute sets of retired series)",
                            folded)
        self.folded = folded


class HistogramInjector:
    """Appends the aggregates' histograms to a collection (as if an SDK Histogram had produced them)."""

    def __init__(self, aggregates: Aggregates, start_ns: int, overflow: SeriesOverflow | None = None) -> None:
        self.aggregates = aggregates
        self.start_ns = start_ns
        self.specs = [s for s in processor_metrics() if s.instrument == "histogram"]
        self.overflow = overflow

    def __call__(self, data: MetricsData) -> MetricsData:
        if self.overflow is not None:
            self.overflow.scan(data)
        now_ns = time.time_ns()
        metrics = []
        for spec in self.specs:
            points = histogram_points(self.aggregates, spec, self.start_ns, now_ns)
            if points:
                metrics.append(Metric(name=spec.name, description=spec.doc, unit=spec.unit, data=Histogram(
                    data_points=points, aggregation_temporality=AggregationTemporality.CUMULATIVE)))
        if not metrics or not data.resource_metrics:
            return data
        # merge into the processor's own scope: the OTLP encoder keys scopes by identity, a second ScopeMetrics of
        # the same scope would replace the first
        rm = data.resource_metrics[0]
        scopes = list(rm.scope_metrics)
        for i, sm in enumerate(scopes):
            if sm.scope.name == SCOPE_NAME:
                scopes[i] = replace(sm, metrics=[*sm.metrics, *metrics])
                break
        else:
            scopes.append(ScopeMetrics(scope=InstrumentationScope(SCOPE_NAME), metrics=metrics, schema_url=""))
        return replace(data, resource_metrics=[replace(rm, scope_metrics=scopes), *data.resource_metrics[1:]])


class _InjectingExporter(MetricExporter):
    """Wraps the OTLP exporter: injects histograms and counts failed exports.

    Temporality is cumulative for every instrument (the ``MetricExporter`` default), whatever
    ``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` says: the processor's counters continue across restarts
    and replicas are summed in PromQL, which needs cumulative series.
    """

    def __init__(self, inner: MetricExporter, inject: HistogramInjector, on_failure: Callable[[], None]) -> None:
        super().__init__()
        self._inner = inner
        self._inject = inject
        self._on_failure = on_failure

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            result = self._inner.export(self._inject(metrics_data), timeout_millis=timeout_millis, **kwargs)
        except Exception:
            _logger.exception("OTLP metric export failed")
            result = MetricExportResult.FAILURE
        if result != MetricExportResult.SUCCESS:
            self._on_failure()
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def split_credentials(endpoint: str) -> tuple[str, dict[str, str] | None]:
    """``endpoint`` without its user info, and the ``authorization: Basic`` header it stood for (None without).

    A gRPC target cannot carry user info, and neither exporter should put it in its log lines.
    """
    parts = urllib.parse.urlsplit(endpoint)
    if parts.username is None and parts.password is None:
        return endpoint, None
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {"authorization": f"Basic {token}"}


def _otlp_exporter(otlp: OtlpMetricsConfig) -> MetricExporter:
    endpoint, basic = split_credentials(otlp.endpoint)
    headers = {**(basic or {}), **otlp.headers} or None
    tls = otlp.tls
    if otlp.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        insecure = endpoint.startswith("http://")
        credentials = None
        if tls is not None:
            def read(path: str | None) -> bytes | None:
                return Path(path).read_bytes() if path else None

            credentials = grpc.ssl_channel_credentials(read(tls.ca_file), read(tls.key_file), read(tls.cert_file))
        return GrpcExporter(endpoint=endpoint.split("://", 1)[-1], insecure=insecure, credentials=credentials,
                            headers=headers)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

    return HttpExporter(endpoint=endpoint.rstrip("/") + "/v1/metrics", headers=headers,
                        certificate_file=tls.ca_file if tls else None,
                        client_key_file=tls.key_file if tls else None,
                        client_certificate_file=tls.cert_file if tls else None)


class MetricsOutput:
    """The processor's MeterProvider, its readers and the observable instruments."""

    def __init__(self, config: ProcessorConfig, aggregates: Aggregates, live: LiveGauges | None = None,
                 extra_readers: Sequence[MetricReader] = ()) -> None:
        self.aggregates = aggregates
        self.overflow = SeriesOverflow()
        self.live = {m.PROCESSOR_SERIES_OVERFLOW.name: lambda: float(self.overflow.folded), **(live or {})}
        self.inject = HistogramInjector(aggregates, time.time_ns(), self.overflow)
        limits = sdk_cardinality_limits(config)
        self._prom_server: Any = None
        readers: list[MetricReader] = list(extra_readers)
        otlp = config.metrics.otlp
        if otlp is not None:
            _logger.info("exporting metrics over OTLP/%s to %s every %gs", otlp.protocol, redact(otlp.endpoint),
                         otlp.interval)
            exporter = _InjectingExporter(_otlp_exporter(otlp), self.inject,
                                          self._export_failed)
            readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=otlp.interval * 1000,
                                                         cardinality_limits=limits))
        if config.metrics.prometheus is not None:
            readers.append(prometheus_reader(self.inject, cardinality_limits=limits))
            from otel_ml.processor.scrape import scrape_endpoint

            self._prom_server = scrape_endpoint(config, aggregates).start()
        resource = Resource.create({"service.name": SERVICE_NAME,
                                    "service.instance.id": config.resolved_instance_id()})
        self.provider = MeterProvider(resource=resource, metric_readers=readers)
        meter = self.provider.get_meter(SCOPE_NAME)
        for spec in processor_metrics():
            kwargs: dict[str, Any] = {"name": spec.name, "unit": spec.unit, "description": spec.doc}
            if spec.instrument == "counter":
                meter.create_observable_counter(callbacks=[self._sum_callback(spec.name)], **kwargs)
            elif spec.instrument == "updowncounter":
                meter.create_observable_up_down_counter(callbacks=[self._sum_callback(spec.name)], **kwargs)
            elif spec.instrument == "gauge":
                meter.create_observable_gauge(callbacks=[self._gauge_callback(spec.name)], **kwargs)

    def _export_failed(self) -> None:
        self.aggregates.add_uncommitted(m.PROCESSOR_EXPORT_FAILURES.name, (), 1.0)

    def _sum_callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            points = self.aggregates.snapshot(name)
            self.overflow.observed(name, len(points))
            return [Observation(v, dict(attrs)) for attrs, v in points]
        return callback

    def _gauge_callback(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(options: CallbackOptions) -> Iterable[Observation]:
            live = self.live.get(name)
            if live is not None:
                return [Observation(live(), {})]
            points = self.aggregates.gauge_snapshot(name)
            self.overflow.observed(name, len(points))
            return [Observation(v, dict(attrs)) for attrs, v in points]
        return callback

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Export now."""
        return bool(self.provider.force_flush(timeout_millis))

    @property
    def prometheus_port(self) -> int | None:
        """Bound port of the scrape endpoint (None when disabled)."""
        return self._prom_server.port if self._prom_server is not None else None

    def shutdown(self, timeout: float = 30.0) -> None:
        """Final export and shutdown, within ``timeout`` seconds (an export still running then is abandoned)."""
        try:
            self.provider.shutdown(timeout_millis=max(timeout, 0.1) * 1000)
        finally:
            if self._prom_server is not None:
                self._prom_server.stop(0.5)


def publish_final_totals(config: ProcessorConfig, instance_id: str, totals: Mapping[Key, float],
                         timeout_millis: float = 10_000) -> bool:
    """Export ``totals`` once, over OTLP, as the cumulative series of the replica ``instance_id`` (gone replicas).

    Used by the shared store's :class:`~otel_ml.processor.store.postgres.ReplicaAdopter`: the series of a replica
    that died between a commit and its next export end at their committed values. Returns whether the export
    succeeded (the caller tries again later otherwise).
    """
    if config.metrics.otlp is None:
        return False
    aggregates = Aggregates(totals)
    name = m.PROCESSOR_EXPORT_FAILURES.name
    failures = aggregates.value(name)
    output = MetricsOutput(replace(config, instance_id=instance_id,
                                   metrics=replace(config.metrics, prometheus=None)), aggregates)
    try:
        flushed = output.force_flush(timeout_millis)
    finally:
        output.provider.shutdown(timeout_millis=timeout_millis)
    return flushed and aggregates.value(name) == failures
