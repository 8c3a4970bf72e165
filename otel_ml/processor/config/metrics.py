"""The ``metrics:`` section: OTLP export (with its client TLS and headers), the Prometheus scrape endpoint,
cardinality caps and series limits, ranking k and the ROC-AUC window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from otel_ml.processor.config.receivers import AuthConfig, TlsConfig, _auth, _tls
from otel_ml.processor.config.validation import (
    ConfigError,
    _file,
    _host_port,
    _int,
    _mapping,
    _min_duration,
    _section,
    parse_duration,
)

DEFAULT_OTLP_METRICS_ENDPOINT: Final = "http://127.0.0.1:4317"
DEFAULT_OTLP_METRICS_PROTOCOL: Final = "grpc"
DEFAULT_EXPORT_INTERVAL_S: Final = 10.0
DEFAULT_PROMETHEUS_ENDPOINT: Final = "127.0.0.1:9464"
DEFAULT_CARDINALITY_LIMIT: Final = 200
DEFAULT_CARDINALITY_IDLE_S: Final = 86400.0
DEFAULT_CARDINALITY_ADMISSION: Final = 20
DEFAULT_SERIES_LIMIT: Final = 10_000
DEFAULT_RANKING_K: Final = (1, 5, 10)
DEFAULT_AUC_WINDOW: Final = 10_000
PROTOCOLS: Final = ("grpc", "http/protobuf")


@dataclass(frozen=True, slots=True)
class OtlpMetricsConfig:
    """OTLP metric export (``metrics.otlp``)."""

    endpoint: str = DEFAULT_OTLP_METRICS_ENDPOINT
    protocol: str = DEFAULT_OTLP_METRICS_PROTOCOL
    interval: float = DEFAULT_EXPORT_INTERVAL_S
    tls: ClientTlsConfig | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientTlsConfig:
    """Client TLS of the OTLP metric exporter (``metrics.otlp.tls``), as the collector's exporters' ``tls``."""

    ca_file: str | None = None
    """CA of the collector's certificate (default: the system's roots)."""
    cert_file: str | None = None
    key_file: str | None = None
    """Client certificate and key, when the collector's receiver requires mTLS."""


@dataclass(frozen=True, slots=True)
class PrometheusConfig:
    """Prometheus scrape endpoint (``metrics.prometheus``)."""

    endpoint: str = DEFAULT_PROMETHEUS_ENDPOINT
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Metric output (``metrics:``)."""

    otlp: OtlpMetricsConfig | None = field(default_factory=OtlpMetricsConfig)
    prometheus: PrometheusConfig | None = None
    cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT
    cardinality_idle: float = DEFAULT_CARDINALITY_IDLE_S
    cardinality_admission: int = DEFAULT_CARDINALITY_ADMISSION
    series_limit: int = DEFAULT_SERIES_LIMIT
    ranking_k: tuple[int, ...] = DEFAULT_RANKING_K
    auc_window: int = DEFAULT_AUC_WINDOW

    @property
    def prometheus_endpoint(self) -> str | None:
        """``metrics.prometheus.endpoint``, None when the scrape endpoint is disabled."""
        return self.prometheus.endpoint if self.prometheus is not None else None


def _metrics(raw: Mapping[str, Any]) -> MetricsConfig:
    ex = ("metrics: {otlp: {endpoint: http://127.0.0.1:4317, protocol: grpc, interval: 10s}, "
          "prometheus: {endpoint: 127.0.0.1:9464}, cardinality_limit: 200, ranking_k: [1, 5, 10]}")
    s = _section(raw, "metrics", {"otlp", "prometheus", "cardinality_limit", "cardinality_idle",
                                  "cardinality_admission", "series_limit", "ranking_k", "auc_window"}, ex)
    otlp: OtlpMetricsConfig | None = OtlpMetricsConfig()
    if "otlp" in s:
        o = s["otlp"]
        if o is None:
            otlp = None
        elif not isinstance(o, Mapping) or set(o) - {"endpoint", "protocol", "interval", "tls", "headers"}:
            raise ConfigError("metrics.otlp", "expected {endpoint, protocol, interval, tls, headers} or null", ex)
        else:
            endpoint = o.get("endpoint", DEFAULT_OTLP_METRICS_ENDPOINT)
            if not isinstance(endpoint, str) or not re.match(r"^https?://[^/\s]+", endpoint):
                raise ConfigError("metrics.otlp.endpoint", f"expected http(s)://host:port, got {endpoint!r}", ex)
            protocol = o.get("protocol", DEFAULT_OTLP_METRICS_PROTOCOL)
            if protocol not in PROTOCOLS:
                raise ConfigError("metrics.otlp.protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}",
                                  ex)
            otlp = OtlpMetricsConfig(endpoint, protocol, parse_duration(
                o.get("interval", DEFAULT_EXPORT_INTERVAL_S), "metrics.otlp.interval", ex),
                tls=_client_tls(o.get("tls"), endpoint), headers=_headers(o.get("headers")))
    prom: PrometheusConfig | None = None
    if s.get("prometheus") is not None:
        p = s["prometheus"]
        if not isinstance(p, Mapping):
            raise ConfigError("metrics.prometheus.endpoint", f"expected host:port, got {p!r}", ex)
        p = _mapping(p, "metrics.prometheus", {"endpoint", "tls", "auth"}, ex)
        prom = PrometheusConfig(
            endpoint=_host_port(p.get("endpoint", DEFAULT_PROMETHEUS_ENDPOINT), "metrics.prometheus.endpoint", ex),
            tls=_tls(p.get("tls"), "metrics.prometheus.tls"),
            auth=_auth(p.get("auth"), "metrics.prometheus.auth", basic=True))
    ks = s.get("ranking_k", list(DEFAULT_RANKING_K))
    if not isinstance(ks, list) or not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError("metrics.ranking_k", f"expected a non-empty list of positive integers, got {ks!r}", ex)
    return MetricsConfig(
        otlp=otlp, prometheus=prom,
        cardinality_limit=_int(s.get("cardinality_limit", DEFAULT_CARDINALITY_LIMIT), "metrics.cardinality_limit",
                               ex),
        cardinality_idle=_min_duration(s.get("cardinality_idle", DEFAULT_CARDINALITY_IDLE_S),
                                       "metrics.cardinality_idle", "metrics: {cardinality_idle: 1d}", 60.0),
        cardinality_admission=_int(s.get("cardinality_admission", DEFAULT_CARDINALITY_ADMISSION),
                                   "metrics.cardinality_admission", "metrics: {cardinality_admission: 20}"),
        series_limit=_int(s.get("series_limit", DEFAULT_SERIES_LIMIT), "metrics.series_limit",
                          "metrics: {series_limit: 10000}", 100),
        ranking_k=tuple(sorted(set(ks))),
        auc_window=_int(s.get("auc_window", DEFAULT_AUC_WINDOW), "metrics.auc_window", ex, 2),
    )


def _client_tls(value: Any, endpoint: str) -> ClientTlsConfig | None:
    ex = "metrics: {otlp: {endpoint: https://collector:4317, tls: {ca_file: /etc/otel-ml/collector-ca.crt}}}"
    if value is None:
        return None
    t = _mapping(value, "metrics.otlp.tls", {"ca_file", "cert_file", "key_file"}, ex)
    if not endpoint.startswith("https://"):
        raise ConfigError("metrics.otlp.tls", "needs an https:// endpoint", ex)
    if (t.get("cert_file") is None) != (t.get("key_file") is None):
        raise ConfigError("metrics.otlp.tls", "set cert_file and key_file together", ex)
    return ClientTlsConfig(**{k: _file(v, f"metrics.otlp.tls.{k}", ex) for k, v in t.items() if v is not None})


def _headers(value: Any) -> dict[str, str]:
    ex = 'metrics: {otlp: {headers: {authorization: "Bearer ${env:OTEL_ML_COLLECTOR_TOKEN}"}}}'
    if value is None:
        return {}
    if not isinstance(value, Mapping) or any(not isinstance(k, str) or not re.match(r"^[A-Za-z0-9-]+$", k)
                                             or not isinstance(v, str) for k, v in value.items()):
        raise ConfigError("metrics.otlp.headers", "expected a mapping of header names to strings", ex)
    return {k.lower(): v for k, v in value.items()}
