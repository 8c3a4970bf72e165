"""Processor configuration: YAML -> frozen dataclasses, validated at start-up.

Every key has a named default (``DEFAULT_*``) and a row in :data:`CONFIG_KEYS`, from which the README reference table
is generated (:func:`reference_table`; a test checks the README is up to date). Errors raise
:class:`ConfigError` naming the key and showing a valid example; the CLI turns them into exit status 2.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from otel_ml.errors import ConfigurationError

DEFAULT_GRPC_ENDPOINT: Final = "localhost:4317"
DEFAULT_HTTP_ENDPOINT: Final = "localhost:4318"
DEFAULT_MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_REQUESTS: Final = 8
DEFAULT_RETRY_AFTER_S: Final = 1
DEFAULT_MAX_CONNECTIONS: Final = 256
DEFAULT_READ_HEADER_TIMEOUT_S: Final = 10.0
DEFAULT_READ_TIMEOUT_S: Final = 60.0
DEFAULT_IDLE_TIMEOUT_S: Final = 60.0
DEFAULT_TLS_MIN_VERSION: Final = "1.2"
TLS_VERSIONS: Final = ("1.2", "1.3")
DEFAULT_SHUTDOWN_GRACE_S: Final = 20.0
DEFAULT_MEMORY_CHECK_INTERVAL_S: Final = 1.0
DEFAULT_MEMORY_LIMIT_PERCENTAGE: Final = 80
DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE: Final = 20
DEFAULT_STORE_BACKEND: Final = "sqlite"
DEFAULT_STORE_PATH: Final = "./otel-ml-data/store.db"
DEFAULT_STORE_SCHEMA: Final = "otel_ml"
DEFAULT_LABEL_WINDOW_S: Final = 7 * 86400.0
DEFAULT_MAX_PENDING: Final = 20_000_000
DEFAULT_EXPIRE_INTERVAL_S: Final = 10.0
DEFAULT_REPLICA_TIMEOUT_S: Final = 300.0
DEFAULT_STORE_LOCK_TIMEOUT_S: Final = 5.0
DEFAULT_OTLP_METRICS_ENDPOINT: Final = "http://127.0.0.1:4317"
DEFAULT_OTLP_METRICS_PROTOCOL: Final = "grpc"
DEFAULT_EXPORT_INTERVAL_S: Final = 10.0
DEFAULT_PROMETHEUS_ENDPOINT: Final = "127.0.0.1:9464"
DEFAULT_CARDINALITY_LIMIT: Final = 200
DEFAULT_CARDINALITY_IDLE_S: Final = 86400.0
DEFAULT_CARDINALITY_ADMISSION: Final = 20
DEFAULT_SERIES_LIMIT: Final = 10_000
# the limits.* defaults accept everything the instrumentation SDK sends (otel_ml/instrumentation/limits.py: strings
# of 1024 characters, 256-character keys, 16 segments, 128 features, 1000 array items), except metric-label values
# (model name/version, segment values), which become Prometheus labels and are held in the cardinality caps
DEFAULT_PREDICTION_ID_BYTES: Final = 4096
DEFAULT_MODEL_BYTES: Final = 256
DEFAULT_CLASS_BYTES: Final = 4096
DEFAULT_SEGMENT_BYTES: Final = 256
DEFAULT_FEATURE_NAME_BYTES: Final = 1024
DEFAULT_FEATURE_VALUE_BYTES: Final = 4096
DEFAULT_SEGMENTS_PER_RECORD: Final = 16
DEFAULT_FEATURES_PER_RECORD: Final = 128
DEFAULT_CLASSES_PER_RECORD: Final = 1000
DEFAULT_RANKING_K: Final = (1, 5, 10)
DEFAULT_AUC_WINDOW: Final = 10_000
DEFAULT_REFERENCE_DIRECTORY: Final = "./references"
DEFAULT_RELOAD_INTERVAL_S: Final = 30.0
DEFAULT_RELABEL_PATH: Final = "./otel-ml-data/relabel.jsonl"
DEFAULT_RELABEL_MAX_SAMPLES: Final = 10_000
BACKENDS: Final = ("sqlite", "postgres", "memory")
PROTOCOLS: Final = ("grpc", "http/protobuf")

EXAMPLE: Final = """\
instance_id: replica-a
shutdown_grace: 20s
receiver:
  grpc: {endpoint: 0.0.0.0:4317}
  http: {endpoint: 0.0.0.0:4318, max_connections: 256}
  max_request_bytes: 16777216
  max_inflight_requests: 8
memory_limiter: {check_interval: 1s, limit_percentage: 80, spike_limit_percentage: 20}
store:
  backend: sqlite
  path: ./otel-ml-data/store.db
  label_window: 7d
  max_pending: 20000000
metrics:
  otlp: {endpoint: http://127.0.0.1:4317, protocol: grpc, interval: 10s}
  prometheus: {endpoint: 127.0.0.1:9464}
  cardinality_limit: 200
  cardinality_idle: 1d
  ranking_k: [1, 5, 10]
  auc_window: 10000
limits:
  prediction_id_bytes: 4096
  segments_per_record: 16
"""
"""A complete valid config (shown in error messages)."""


class ConfigError(ConfigurationError):
    """The processor config is invalid; the message names the key and shows a valid example."""

    def __init__(self, key: str, problem: str, example: str) -> None:
        super().__init__(f"invalid processor config at `{key}`: {problem}\n  valid example:\n    {example}")
        self.key = key


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Server TLS of an endpoint (``tls:``), keys as in the collector's ``configtls`` server settings."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    """When set, clients must present a certificate signed by one of these CAs (mTLS)."""
    min_version: str = DEFAULT_TLS_MIN_VERSION
    reload_interval: float | None = None
    """Re-read the certificate files (when changed) at most this often; None: read once at start."""


@dataclass(frozen=True, slots=True)
class BasicAuthConfig:
    """HTTP basic auth of the Prometheus scrape endpoint (``auth.basic``)."""

    username: str
    password: str | None = None
    password_file: str | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Client authentication of an endpoint (``auth:``): bearer tokens like the collector's ``bearertokenauth``.

    ``bearer_token_file`` holds one or more tokens, one per line (to rotate: add the new token, move the senders,
    remove the old one); it is re-read when it changes. ``basic`` is accepted on the scrape endpoint only.
    """

    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic: BasicAuthConfig | None = None


@dataclass(frozen=True, slots=True)
class GrpcReceiverConfig:
    """OTLP/gRPC receiver (``receiver.grpc``)."""

    endpoint: str = DEFAULT_GRPC_ENDPOINT
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@dataclass(frozen=True, slots=True)
class HttpReceiverConfig:
    """OTLP/HTTP receiver (``receiver.http``); the timeouts and connection cap also bound the scrape endpoint."""

    endpoint: str = DEFAULT_HTTP_ENDPOINT
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT_S
    read_timeout: float = DEFAULT_READ_TIMEOUT_S
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """OTLP receivers (``receiver:``)."""

    grpc: GrpcReceiverConfig | None = field(default_factory=GrpcReceiverConfig)
    http: HttpReceiverConfig | None = field(default_factory=HttpReceiverConfig)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS
    retry_after: int = DEFAULT_RETRY_AFTER_S

    @property
    def grpc_endpoint(self) -> str | None:
        """``receiver.grpc.endpoint``, None when the gRPC receiver is disabled."""
        return self.grpc.endpoint if self.grpc is not None else None

    @property
    def http_endpoint(self) -> str | None:
        """``receiver.http.endpoint``, None when the HTTP receiver is disabled."""
        return self.http.endpoint if self.http is not None else None


@dataclass(frozen=True, slots=True)
class MemoryLimiterConfig:
    """Memory limiter (``memory_limiter:``), keys as in the collector's ``memory_limiter`` processor.

    The hard limit is ``limit_mib`` (or ``limit_percentage`` of the cgroup's memory limit, else of the host's
    memory); the soft limit is the hard limit minus ``spike_limit_mib`` (or ``spike_limit_percentage``; default
    20 % of the hard limit). See :mod:`otel_ml.processor.memory`.
    """

    check_interval: float = DEFAULT_MEMORY_CHECK_INTERVAL_S
    limit_mib: int | None = None
    spike_limit_mib: int | None = None
    limit_percentage: int | None = DEFAULT_MEMORY_LIMIT_PERCENTAGE
    spike_limit_percentage: int | None = DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE

    def limits(self, total_bytes: int) -> tuple[int, int]:
        """``(soft, hard)`` limits in bytes, given the memory available to the process (cgroup or host)."""
        if self.limit_mib is not None:
            hard = self.limit_mib * 2**20
            spike = self.spike_limit_mib * 2**20 if self.spike_limit_mib is not None else hard // 5
        else:
            hard = total_bytes * (self.limit_percentage or 0) // 100
            spike = (total_bytes * self.spike_limit_percentage // 100 if self.spike_limit_percentage is not None
                     else hard // 5)
        return max(hard - spike, 0), hard


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Join store (``store:``)."""

    backend: str = DEFAULT_STORE_BACKEND
    path: str = DEFAULT_STORE_PATH
    dsn: str = ""
    schema: str = DEFAULT_STORE_SCHEMA
    label_window: float = DEFAULT_LABEL_WINDOW_S
    max_pending: int = DEFAULT_MAX_PENDING
    expire_interval: float = DEFAULT_EXPIRE_INTERVAL_S
    replica_timeout: float = DEFAULT_REPLICA_TIMEOUT_S
    lock_timeout: float = DEFAULT_STORE_LOCK_TIMEOUT_S
    """SQLite: how long a step waits for a lock another process holds on the store before it fails (``locked``)."""


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


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Per-record limits of the decoder (``limits:``): lengths in bytes of UTF-8, counts per record.

    A record beyond a length or count limit is rejected alone (``too_long`` / ``too_many``); a feature beyond its
    limits is dropped from an accepted record (``ml.processor.features.dropped``). The checks run on the raw value
    before it is copied (C decoder) and before any other validation of the record, in wire order.
    """

    prediction_id_bytes: int = DEFAULT_PREDICTION_ID_BYTES
    model_bytes: int = DEFAULT_MODEL_BYTES
    class_bytes: int = DEFAULT_CLASS_BYTES
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    feature_name_bytes: int = DEFAULT_FEATURE_NAME_BYTES
    feature_value_bytes: int = DEFAULT_FEATURE_VALUE_BYTES
    segments_per_record: int = DEFAULT_SEGMENTS_PER_RECORD
    features_per_record: int = DEFAULT_FEATURES_PER_RECORD
    classes_per_record: int = DEFAULT_CLASSES_PER_RECORD


@dataclass(frozen=True, slots=True)
class ReferenceConfig:
    """Reference artifacts for the estimation/drift stage (``reference:``)."""

    directory: str = DEFAULT_REFERENCE_DIRECTORY
    reload_interval: float = DEFAULT_RELOAD_INTERVAL_S


@dataclass(frozen=True, slots=True)
class RelabelConfig:
    """Samples-to-relabel sink of the estimation stage (``relabel:``)."""

    path: str = DEFAULT_RELABEL_PATH
    max_samples: int = DEFAULT_RELABEL_MAX_SAMPLES


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    """The whole processor config."""

    instance_id: str = ""
    receiver: ReceiverConfig = field(default_factory=ReceiverConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    reference: ReferenceConfig | None = None
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    stages: tuple[str, ...] = ()
    stages_config: Mapping[str, Any] = field(default_factory=dict)
    memory_limiter: MemoryLimiterConfig | None = field(default_factory=MemoryLimiterConfig)
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_S

    def resolved_instance_id(self) -> str:
        """``instance_id``, or hostname + a hash of the store's location when unset (stable across restarts).

        The location is the absolute SQLite path, or the PostgreSQL DSN without its password plus the schema.
        """
        if self.instance_id:
            return self.instance_id
        if self.store.backend == "postgres":
            where = f"{dsn_without_password(self.store.dsn)}/{self.store.schema}"
        else:
            where = str(Path(self.store.path).resolve())
        digest = hashlib.sha256(where.encode()).hexdigest()[:8]
        return f"{socket.gethostname()}-{digest}"


@dataclass(frozen=True, slots=True)
class KeyDoc:
    """One row of the reference table."""

    key: str
    type: str
    default: str
    doc: str


CONFIG_KEYS: Final[tuple[KeyDoc, ...]] = (
    KeyDoc("instance_id", "string", "hostname + store path hash",
           "`service.instance.id` of exported metrics; keep it stable so a restart continues the same series."),
    KeyDoc("shutdown_grace", "duration", "20s",
           "On SIGTERM/SIGINT: refuse new requests (retryable), drain those in flight, commit, export the metrics a "
           "last time and exit 0 within this time (keep it below Kubernetes' `terminationGracePeriodSeconds`, "
           "30s by default)."),
    KeyDoc("receiver.grpc.endpoint", "host:port or null", DEFAULT_GRPC_ENDPOINT,
           "OTLP/gRPC `LogsService` (gzip accepted); `receiver.grpc: null` disables it. Loopback only unless "
           "set (`0.0.0.0:4317`: every interface; then configure `tls` and `auth`)."),
    KeyDoc("receiver.grpc.tls", "mapping", "none (plaintext)",
           "`{cert_file, key_file, client_ca_file, min_version, reload_interval}` as in the collector: server "
           "certificate; `client_ca_file` requires client certificates signed by it (mTLS); `min_version` `1.2` "
           "(grpc cannot enforce `1.3`); `reload_interval` re-reads changed files."),
    KeyDoc("receiver.grpc.auth", "mapping", "none",
           "`{bearer_token}` or `{bearer_token_file}` (one token per line, re-read when it changes): requests "
           "must carry `authorization: Bearer <token>` (the collector's `bearertokenauth`); else UNAUTHENTICATED, "
           "counted in `ml.processor.auth.failures`."),
    KeyDoc("receiver.grpc.max_connections", "int", str(DEFAULT_MAX_CONNECTIONS),
           "Open connections at once; beyond, grpc closes new ones at once (uncounted: grpc core does it). TLS and "
           "HTTP/2 handshakes must finish within 10s."),
    KeyDoc("receiver.http.endpoint", "host:port or null", DEFAULT_HTTP_ENDPOINT,
           "OTLP/HTTP `POST /v1/logs` (protobuf, `Content-Encoding: gzip`, identity or chunked bodies); "
           "`receiver.http: null` disables it. Loopback only unless set."),
    KeyDoc("receiver.http.tls", "mapping", "none (plaintext)",
           "As `receiver.grpc.tls`; `min_version` `1.2` or `1.3`. Failed handshakes are counted."),
    KeyDoc("receiver.http.auth", "mapping", "none", "As `receiver.grpc.auth`; else HTTP 401."),
    KeyDoc("receiver.http.max_connections", "int", str(DEFAULT_MAX_CONNECTIONS),
           "Open connections at once; beyond: 503 + Retry-After and close, counted `too_many_connections`."),
    KeyDoc("receiver.http.read_header_timeout", "duration", "10s",
           "Time for the request line and headers (from connect, or from the first byte after a keep-alive "
           "pause); else the connection is closed."),
    KeyDoc("receiver.http.read_timeout", "duration", "60s",
           "Time for the whole body once the headers are in; else 408 and close (nothing acknowledged)."),
    KeyDoc("receiver.http.idle_timeout", "duration", "60s", "Keep-alive connections idle longer are closed."),
    KeyDoc("receiver.max_request_bytes", "int", str(DEFAULT_MAX_REQUEST_BYTES),
           "Largest request (decompressed); larger: HTTP 413 / gRPC RESOURCE_EXHAUSTED, counted `too_large` "
           "(beyond 4x this, grpc itself refuses, uncounted)."),
    KeyDoc("receiver.max_inflight_requests", "int", str(DEFAULT_MAX_INFLIGHT_REQUESTS),
           "Requests parsed or waiting for the store at once; beyond: gRPC UNAVAILABLE / HTTP 503 + Retry-After."),
    KeyDoc("receiver.retry_after", "int seconds", str(DEFAULT_RETRY_AFTER_S),
           "`Retry-After` of HTTP 503/429 answers."),
    KeyDoc("memory_limiter.limit_mib", "int or null", "unset",
           "Hard RSS limit in MiB (or `limit_percentage` of the cgroup's, else the host's memory: default 80); "
           "above it caches are shed. `memory_limiter: null` disables the limiter."),
    KeyDoc("memory_limiter.spike_limit_mib", "int or null", "unset",
           "Soft limit = hard - spike (or `spike_limit_percentage`, default 20; 20 % of `limit_mib`): a request is "
           "refused (503 / UNAVAILABLE, `memory_limit`) before its body is read when RSS plus the memory the "
           "requests in flight may still take would pass it."),
    KeyDoc("memory_limiter.check_interval", "duration", "1s", "How often RSS is sampled to shed caches."),
    KeyDoc("store.backend", "`sqlite`, `postgres` or `memory`", DEFAULT_STORE_BACKEND,
           "Join store: embedded SQLite (one replica), a PostgreSQL database shared by every replica (scale-out), "
           "or `memory` (not durable: tests and benchmarks)."),
    KeyDoc("store.path", "path", DEFAULT_STORE_PATH, "SQLite database (WAL mode); created with its directory."),
    KeyDoc("store.dsn", "libpq URL or key=value string", "required for `postgres`",
           "PostgreSQL connection, e.g. `postgresql://otelml:${env:OTEL_ML_PG_PASSWORD}@db:5432/otelml` (any "
           "string value may use `${env:NAME}` / `${env:NAME:-default}`; `$$` is a literal `$`)."),
    KeyDoc("store.schema", "identifier", DEFAULT_STORE_SCHEMA,
           "PostgreSQL schema of the join tables (created if missing; migrations run at start-up)."),
    KeyDoc("store.replica_timeout", "duration", "5m",
           "`postgres`: a replica silent for this long is gone; the sweep leader publishes its last committed "
           "totals once under its `instance_id`, so a replica killed before its last export loses no count."),
    KeyDoc("store.label_window", "duration", "7d",
           "TTL of a pending prediction or label; expired predictions count as never labeled."),
    KeyDoc("store.max_pending", "int", str(DEFAULT_MAX_PENDING),
           "Bound on pending records; beyond it the oldest are evicted (counted)."),
    KeyDoc("store.expire_interval", "duration", "10s",
           "How often records older than the label window are swept (eviction happens at once)."),
    KeyDoc("store.lock_timeout", "duration", "5s",
           "SQLite: how long a step waits for a lock held by another process (a backup, a `sqlite3` shell) before "
           "its requests are answered UNAVAILABLE (counted in `ml.processor.store.errors{ml.reason=locked}`)."),
    KeyDoc("metrics.otlp.endpoint", "URL", DEFAULT_OTLP_METRICS_ENDPOINT,
           "OTLP metrics destination (cumulative temporality); `metrics.otlp: null` disables it."),
    KeyDoc("metrics.otlp.protocol", "`grpc` or `http/protobuf`", DEFAULT_OTLP_METRICS_PROTOCOL,
           "OTLP transport (`http/protobuf` posts to `<endpoint>/v1/metrics`)."),
    KeyDoc("metrics.otlp.interval", "duration", "10s", "Export interval."),
    KeyDoc("metrics.otlp.tls", "mapping", "system roots (https)",
           "`{ca_file, cert_file, key_file}` (https endpoints): the collector's CA, and a client certificate when its "
           "receiver requires mTLS."),
    KeyDoc("metrics.otlp.headers", "mapping", "{}",
           "Headers of every export, e.g. `authorization: \"Bearer ${env:OTEL_ML_COLLECTOR_TOKEN}\"` for a collector "
           "receiver with `bearertokenauth` (values are redacted in logs)."),
    KeyDoc("metrics.prometheus.endpoint", "host:port", "disabled",
           "Optional Prometheus scrape endpoint (`/metrics`) for setups without a collector."),
    KeyDoc("metrics.prometheus.tls", "mapping", "none (plaintext)", "As `receiver.http.tls`."),
    KeyDoc("metrics.prometheus.auth", "mapping", "none",
           "`{bearer_token}`, `{bearer_token_file}` or `{basic: {username, password or password_file}}` "
           "(Prometheus' `authorization` / `basic_auth` scrape settings); else 401, counted."),
    KeyDoc("metrics.cardinality_limit", "int", str(DEFAULT_CARDINALITY_LIMIT),
           "Distinct values per model and metric attribute (and distinct models); overflow goes to `_other`, "
           "counted in `ml.processor.attribute.overflow{ml.reason}`. Values of a loaded reference artifact (model, "
           "version, classes, features) are always admitted and take no slot."),
    KeyDoc("metrics.cardinality_idle", "duration", "1d",
           "A capped value unseen for this long gives up its slot when a new value needs one (its series are "
           "removed); last-seen times are persisted, so a restart does not bring junk back."),
    KeyDoc("metrics.cardinality_admission", "int", str(DEFAULT_CARDINALITY_ADMISSION),
           "Once half of a cap is taken, a new value needs this many sightings (separate processing steps) before "
           "it gets a slot: one-off junk cannot fill the cap to the exclusion of real, recurring values."),
    KeyDoc("metrics.series_limit", "int", str(DEFAULT_SERIES_LIMIT),
           "Points per metric; a new combination beyond it is folded into the all-`_other` point (counted, reason "
           "`series`). The OTel SDK's per-instrument cardinality limit is set to this + 1; anything the SDK still "
           "folds is counted in `ml.processor.series.overflow`."),
    KeyDoc("metrics.ranking_k", "list of int", "[1, 5, 10]", "The k of precision@k and NDCG@k."),
    KeyDoc("metrics.auc_window", "int", str(DEFAULT_AUC_WINDOW),
           "Most recent joined binary predictions per model and version behind the ROC-AUC gauge."),
    KeyDoc("limits.prediction_id_bytes", "int", str(DEFAULT_PREDICTION_ID_BYTES),
           "Longest `ml.prediction.id` (UTF-8 bytes); longer: the record is rejected, `too_long`."),
    KeyDoc("limits.model_bytes", "int", str(DEFAULT_MODEL_BYTES),
           "Longest `ml.model.name` and `ml.model.version`; longer: rejected, `too_long`."),
    KeyDoc("limits.class_bytes", "int", str(DEFAULT_CLASS_BYTES),
           "Longest class: `ml.prediction.value` / `ml.label.value` strings and every item of `ml.prediction.values`, "
           "`ml.prediction.classes`, `ml.label.values`; longer: rejected, `too_long`."),
    KeyDoc("limits.segment_bytes", "int", str(DEFAULT_SEGMENT_BYTES),
           "Longest segment dimension (the `<dim>` of `ml.segment.<dim>`) and segment value; longer: rejected, "
           "`too_long`."),
    KeyDoc("limits.segments_per_record", "int", str(DEFAULT_SEGMENTS_PER_RECORD),
           "Most `ml.segment.*` attributes on one record; more: rejected, `too_many`."),
    KeyDoc("limits.classes_per_record", "int", str(DEFAULT_CLASSES_PER_RECORD),
           "Most items of any list attribute (classes, scores, predicted or true sets, relevance); more: rejected, "
           "`too_many`."),
    KeyDoc("limits.feature_name_bytes", "int", str(DEFAULT_FEATURE_NAME_BYTES),
           "Longest feature name; a longer feature is dropped from the record (counted, "
           "`ml.processor.features.dropped{ml.reason=too_long}`)."),
    KeyDoc("limits.feature_value_bytes", "int", str(DEFAULT_FEATURE_VALUE_BYTES),
           "Longest string feature value; a longer one is dropped (counted, `too_long`)."),
    KeyDoc("limits.features_per_record", "int", str(DEFAULT_FEATURES_PER_RECORD),
           "Most features kept per record (wire order); the rest are dropped (counted, `too_many`)."),
    KeyDoc("reference.directory", "path", "unset (then ./references)",
           "Reference artifacts; setting `reference:` enables the estimation/drift stage."),
    KeyDoc("reference.reload_interval", "duration", "30s", "How often the reference directory is re-read."),
    KeyDoc("relabel.path", "path", DEFAULT_RELABEL_PATH, "JSONL sink of samples to relabel (estimation stage)."),
    KeyDoc("relabel.max_samples", "int", str(DEFAULT_RELABEL_MAX_SAMPLES), "Bound of the relabel sink."),
    KeyDoc("stages", "list of `module:factory`", "[]", "Extra processor stages (see `otel_ml/processor/stage.py`)."),
    KeyDoc("stages_config", "mapping", "{}", "Free-form options handed to every stage factory."),
)
"""Documented keys, in README order."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any, key: str, example: str) -> float:
    """Seconds from ``30s``, ``5m``, ``7d``, ``250ms`` or a number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(key, f"expected a duration, got {value!r}", example)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(key, f"expected a duration like 30s, 5m, 7d; got {value!r}", example)
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise ConfigError(key, f"must be positive, got {value!r}", example)
    return seconds


def _section(raw: Mapping[str, Any], name: str, allowed: set[str], example: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"expected a mapping, got {type(value).__name__}", example)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})", example)
    return dict(value)


def _int(value: Any, key: str, example: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(key, f"expected an integer >= {minimum}, got {value!r}", example)
    return value


_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]*):\d{1,5}$")


def _host_port(value: Any, key: str, example: str) -> str:
    if not isinstance(value, str) or not _HOST_PORT.match(value) or int(value.rsplit(":", 1)[1]) > 65535:
        raise ConfigError(key, f"expected host:port (IPv6: [::1]:4317), got {value!r}", example)
    return value


def _mapping(value: Any, key: str, allowed: set[str], example: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {value!r}", example)
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}", f"unknown key (known: {', '.join(sorted(allowed))})", example)
    return dict(value)


def _file(value: Any, key: str, example: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"expected a file path, got {value!r}", example)
    if not Path(value).is_file():
        raise ConfigError(key, f"{value} does not exist or is not a file", example)
    return value


def _tls(value: Any, key: str, *, grpc: bool = False) -> TlsConfig | None:
    ex = (f"{key}: {{cert_file: /etc/otel-ml/tls/tls.crt, key_file: /etc/otel-ml/tls/tls.key, "
          f"client_ca_file: /etc/otel-ml/tls/ca.crt, min_version: \"1.2\", reload_interval: 1h}}")
    if value is None:
        return None
    t = _mapping(value, key, {"cert_file", "key_file", "client_ca_file", "min_version", "reload_interval"}, ex)
    for required in ("cert_file", "key_file"):
        if required not in t:
            raise ConfigError(f"{key}.{required}", "required when tls is set", ex)
    version = str(t.get("min_version", DEFAULT_TLS_MIN_VERSION))
    if version not in TLS_VERSIONS:
        raise ConfigError(f"{key}.min_version", f"expected one of {', '.join(TLS_VERSIONS)}, got {version!r}", ex)
    if grpc and version != "1.2":
        # grpcio's Python API has no TLS version setting; grpc core negotiates 1.2 or 1.3 and refuses older ones
        raise ConfigError(f"{key}.min_version", "the gRPC receiver cannot require 1.3 (grpcio has no TLS version "
                          "setting; it always refuses TLS < 1.2)", ex)
    reload = t.get("reload_interval")
    return TlsConfig(
        cert_file=_file(t["cert_file"], f"{key}.cert_file", ex), key_file=_file(t["key_file"], f"{key}.key_file", ex),
        client_ca_file=(_file(t["client_ca_file"], f"{key}.client_ca_file", ex)
                        if t.get("client_ca_file") is not None else None),
        min_version=version,
        reload_interval=parse_duration(reload, f"{key}.reload_interval", ex) if reload is not None else None)


def _auth(value: Any, key: str, *, basic: bool = False) -> AuthConfig | None:
    ex = f"{key}: {{bearer_token_file: /etc/otel-ml/token}}"
    if value is None:
        return None
    allowed = {"bearer_token", "bearer_token_file"} | ({"basic"} if basic else set())
    t = _mapping(value, key, allowed, ex)
    given = [k for k in sorted(allowed) if t.get(k) is not None]
    if len(given) != 1:
        raise ConfigError(key, f"set exactly one of {', '.join(sorted(allowed))} (got {given or 'none'})", ex)
    if "bearer_token" in given:
        token = t["bearer_token"]
        if not isinstance(token, str) or not token.strip() or token != token.strip():
            raise ConfigError(f"{key}.bearer_token", "expected a non-empty token without surrounding spaces", ex)
        return AuthConfig(bearer_token=token)
    if "bearer_token_file" in given:
        return AuthConfig(bearer_token_file=_file(t["bearer_token_file"], f"{key}.bearer_token_file", ex))
    bex = f"{key}: {{basic: {{username: prometheus, password_file: /etc/otel-ml/scrape-password}}}}"
    b = _mapping(t["basic"], f"{key}.basic", {"username", "password", "password_file"}, bex)
    user = b.get("username")
    if not isinstance(user, str) or not user or ":" in user:
        raise ConfigError(f"{key}.basic.username", f"expected a user name without ':', got {user!r}", bex)
    if (b.get("password") is None) == (b.get("password_file") is None):
        raise ConfigError(f"{key}.basic", "set exactly one of password, password_file", bex)
    if b.get("password") is not None:
        if not isinstance(b["password"], str) or not b["password"]:
            raise ConfigError(f"{key}.basic.password", "expected a non-empty string", bex)
        return AuthConfig(basic=BasicAuthConfig(user, password=b["password"]))
    return AuthConfig(basic=BasicAuthConfig(user, password_file=_file(b["password_file"],
                                                                      f"{key}.basic.password_file", bex)))


def _grpc_receiver(section: Mapping[str, Any], example: str) -> GrpcReceiverConfig | None:
    if "grpc" not in section:
        return GrpcReceiverConfig()
    if section["grpc"] is None:
        return None
    g = _mapping(section["grpc"], "receiver.grpc", {"endpoint", "tls", "auth", "max_connections"}, example)
    return GrpcReceiverConfig(
        endpoint=_host_port(g.get("endpoint", DEFAULT_GRPC_ENDPOINT), "receiver.grpc.endpoint", example),
        tls=_tls(g.get("tls"), "receiver.grpc.tls", grpc=True), auth=_auth(g.get("auth"), "receiver.grpc.auth"),
        max_connections=_int(g.get("max_connections", DEFAULT_MAX_CONNECTIONS), "receiver.grpc.max_connections",
                             "receiver: {grpc: {max_connections: 256}}"))


def _http_receiver(section: Mapping[str, Any], example: str) -> HttpReceiverConfig | None:
    if "http" not in section:
        return HttpReceiverConfig()
    if section["http"] is None:
        return None
    h = _mapping(section["http"], "receiver.http", {"endpoint", "tls", "auth", "max_connections",
                                                    "read_header_timeout", "read_timeout", "idle_timeout"}, example)
    return HttpReceiverConfig(
        endpoint=_host_port(h.get("endpoint", DEFAULT_HTTP_ENDPOINT), "receiver.http.endpoint", example),
        tls=_tls(h.get("tls"), "receiver.http.tls"), auth=_auth(h.get("auth"), "receiver.http.auth"),
        max_connections=_int(h.get("max_connections", DEFAULT_MAX_CONNECTIONS), "receiver.http.max_connections",
                             "receiver: {http: {max_connections: 256}}"),
        read_header_timeout=parse_duration(h.get("read_header_timeout", DEFAULT_READ_HEADER_TIMEOUT_S),
                                           "receiver.http.read_header_timeout",
                                           "receiver: {http: {read_header_timeout: 10s}}"),
        read_timeout=parse_duration(h.get("read_timeout", DEFAULT_READ_TIMEOUT_S), "receiver.http.read_timeout",
                                    "receiver: {http: {read_timeout: 60s}}"),
        idle_timeout=parse_duration(h.get("idle_timeout", DEFAULT_IDLE_TIMEOUT_S), "receiver.http.idle_timeout",
                                    "receiver: {http: {idle_timeout: 60s}}"),
    )


def _receiver(raw: Mapping[str, Any]) -> ReceiverConfig:
    ex = "receiver: {grpc: {endpoint: 0.0.0.0:4317}, http: null, max_request_bytes: 16777216}"
    s = _section(raw, "receiver", {"grpc", "http", "max_request_bytes", "max_inflight_requests", "retry_after"}, ex)
    return ReceiverConfig(
        grpc=_grpc_receiver(s, ex),
        http=_http_receiver(s, ex),
        max_request_bytes=_int(s.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES), "receiver.max_request_bytes",
                               ex, 1024),
        max_inflight_requests=_int(s.get("max_inflight_requests", DEFAULT_MAX_INFLIGHT_REQUESTS),
                                   "receiver.max_inflight_requests", "receiver: {max_inflight_requests: 8}"),
        retry_after=_int(s.get("retry_after", DEFAULT_RETRY_AFTER_S), "receiver.retry_after",
                         "receiver: {retry_after: 1}"),
    )


def _store(raw: Mapping[str, Any]) -> StoreConfig:
    ex = "store: {backend: sqlite, path: ./otel-ml-data/store.db, label_window: 7d, max_pending: 20000000}"
    pg_ex = 'store: {backend: postgres, dsn: "postgresql://otelml:${env:OTEL_ML_PG_PASSWORD}@db:5432/otelml"}'
    s = _section(raw, "store", {"backend", "path", "dsn", "schema", "label_window", "max_pending",
                                "expire_interval", "replica_timeout", "lock_timeout"}, ex)
    backend = s.get("backend", DEFAULT_STORE_BACKEND)
    if backend not in BACKENDS:
        raise ConfigError("store.backend", f"expected one of {', '.join(BACKENDS)}, got {backend!r}", ex)
    path = s.get("path", DEFAULT_STORE_PATH)
    if not isinstance(path, str) or not path:
        raise ConfigError("store.path", f"expected a file path, got {path!r}", ex)
    dsn = s.get("dsn", "")
    if backend == "postgres" and (not isinstance(dsn, str) or not dsn.strip()):
        raise ConfigError("store.dsn", f"required with backend postgres, got {dsn!r}", pg_ex)
    if not isinstance(dsn, str) or (dsn and not (re.match(r"^postgres(ql)?://", dsn) or "=" in dsn)):
        raise ConfigError("store.dsn", "expected a postgresql:// URL or a libpq key=value string", pg_ex)
    if dsn and backend != "postgres":
        raise ConfigError("store.dsn", f"only used with backend postgres (backend is {backend})", pg_ex)
    schema = s.get("schema", DEFAULT_STORE_SCHEMA)
    if not isinstance(schema, str) or not re.match(r"^[a-z_][a-z0-9_]{0,62}$", schema):
        raise ConfigError("store.schema", f"expected a lower-case SQL identifier, got {schema!r}",
                          "store: {backend: postgres, dsn: ..., schema: otel_ml}")
    return StoreConfig(
        backend=backend, path=path, dsn=dsn, schema=schema,
        label_window=parse_duration(s.get("label_window", DEFAULT_LABEL_WINDOW_S), "store.label_window", ex),
        max_pending=_int(s.get("max_pending", DEFAULT_MAX_PENDING), "store.max_pending", ex),
        expire_interval=parse_duration(s.get("expire_interval", DEFAULT_EXPIRE_INTERVAL_S), "store.expire_interval",
                                       "store: {expire_interval: 10s}"),
        replica_timeout=_replica_timeout(s),
        lock_timeout=parse_duration(s.get("lock_timeout", DEFAULT_STORE_LOCK_TIMEOUT_S), "store.lock_timeout",
                                    "store: {lock_timeout: 5s}"),
    )


def _replica_timeout(s: Mapping[str, Any]) -> float:
    ex = "store: {backend: postgres, dsn: ..., replica_timeout: 5m}"
    seconds = parse_duration(s.get("replica_timeout", DEFAULT_REPLICA_TIMEOUT_S), "store.replica_timeout", ex)
    if seconds < 3:  # replicas refresh their heartbeat with a commit every third of it, and commit every second
        raise ConfigError("store.replica_timeout", f"must be at least 3s, got {s.get('replica_timeout')!r}", ex)
    return seconds


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


def _min_duration(value: Any, key: str, example: str, minimum: float) -> float:
    seconds = parse_duration(value, key, example)
    if seconds < minimum:
        raise ConfigError(key, f"must be at least {minimum:g}s, got {value!r}", example)
    return seconds


_LIMIT_MINIMUMS: Final = {"prediction_id_bytes": 16, "model_bytes": 8, "class_bytes": 8, "segment_bytes": 8,
                          "feature_name_bytes": 8, "feature_value_bytes": 8, "segments_per_record": 1,
                          "features_per_record": 1, "classes_per_record": 2}
"""Smallest accepted value of each ``limits.*`` key (below it real traffic could not pass)."""
_LIMIT_MAXIMUM: Final = 1 << 24
"""Largest accepted value of any ``limits.*`` key (16 MiB: a limit above the request size bounds nothing)."""


def _limits(raw: Mapping[str, Any]) -> LimitsConfig:
    ex = "limits: {prediction_id_bytes: 4096, class_bytes: 4096, segments_per_record: 16}"
    s = _section(raw, "limits", set(_LIMIT_MINIMUMS), ex)
    values: dict[str, int] = {}
    for name, minimum in _LIMIT_MINIMUMS.items():
        if name in s:
            value = _int(s[name], f"limits.{name}", ex, minimum)
            if value > _LIMIT_MAXIMUM:
                raise ConfigError(f"limits.{name}", f"expected at most {_LIMIT_MAXIMUM}, got {value!r}", ex)
            values[name] = value
    return LimitsConfig(**values)


def _reference(raw: Mapping[str, Any]) -> ReferenceConfig | None:
    if raw.get("reference") is None:
        return None
    ex = "reference: {directory: ./references, reload_interval: 30s}"
    s = _section(raw, "reference", {"directory", "reload_interval"}, ex)
    directory = s.get("directory", DEFAULT_REFERENCE_DIRECTORY)
    if not isinstance(directory, str) or not directory:
        raise ConfigError("reference.directory", f"expected a directory path, got {directory!r}", ex)
    return ReferenceConfig(directory, parse_duration(s.get("reload_interval", DEFAULT_RELOAD_INTERVAL_S),
                                                     "reference.reload_interval", ex))


def _relabel(raw: Mapping[str, Any]) -> RelabelConfig:
    ex = "relabel: {path: ./otel-ml-data/relabel.jsonl, max_samples: 10000}"
    s = _section(raw, "relabel", {"path", "max_samples"}, ex)
    path = s.get("path", DEFAULT_RELABEL_PATH)
    if not isinstance(path, str) or not path:
        raise ConfigError("relabel.path", f"expected a file path, got {path!r}", ex)
    return RelabelConfig(path, _int(s.get("max_samples", DEFAULT_RELABEL_MAX_SAMPLES), "relabel.max_samples", ex))


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


def _memory_limiter(raw: Mapping[str, Any]) -> MemoryLimiterConfig | None:
    if "memory_limiter" in raw and raw["memory_limiter"] is None:
        return None
    ex = "memory_limiter: {check_interval: 1s, limit_mib: 1024, spike_limit_mib: 256}"
    s = _section(raw, "memory_limiter", {"check_interval", "limit_mib", "spike_limit_mib", "limit_percentage",
                                         "spike_limit_percentage"}, ex)
    check = parse_duration(s.get("check_interval", DEFAULT_MEMORY_CHECK_INTERVAL_S), "memory_limiter.check_interval",
                           ex)
    if s.get("limit_mib") is not None:
        if s.get("limit_percentage") is not None or s.get("spike_limit_percentage") is not None:
            raise ConfigError("memory_limiter.limit_percentage", "set either limit_mib (+ spike_limit_mib) or "
                              "limit_percentage (+ spike_limit_percentage), not both", ex)
        limit = _int(s["limit_mib"], "memory_limiter.limit_mib", ex, 64)
        spike = s.get("spike_limit_mib")
        if spike is not None and (_int(spike, "memory_limiter.spike_limit_mib", ex) >= limit):
            raise ConfigError("memory_limiter.spike_limit_mib", f"must be below limit_mib ({limit})", ex)
        return MemoryLimiterConfig(check, limit_mib=limit, spike_limit_mib=spike, limit_percentage=None,
                                   spike_limit_percentage=None)
    if s.get("spike_limit_mib") is not None:
        raise ConfigError("memory_limiter.spike_limit_mib", "needs limit_mib", ex)
    pex = "memory_limiter: {limit_percentage: 80, spike_limit_percentage: 20}"
    pct = _int(s.get("limit_percentage", DEFAULT_MEMORY_LIMIT_PERCENTAGE), "memory_limiter.limit_percentage", pex)
    if pct > 100:
        raise ConfigError("memory_limiter.limit_percentage", f"expected a percentage <= 100, got {pct}", pex)
    spike_pct = s.get("spike_limit_percentage", DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE if "limit_percentage" not in s
                      else None)
    if spike_pct is not None and _int(spike_pct, "memory_limiter.spike_limit_percentage", pex) >= pct:
        raise ConfigError("memory_limiter.spike_limit_percentage", f"must be below limit_percentage ({pct})", pex)
    return MemoryLimiterConfig(check, limit_percentage=pct, spike_limit_percentage=spike_pct)


_TOP = {"instance_id", "receiver", "store", "metrics", "limits", "reference", "relabel", "stages", "stages_config",
        "memory_limiter", "shutdown_grace"}


def from_mapping(raw: Mapping[str, Any] | None) -> ProcessorConfig:
    """Validate a parsed YAML mapping.

    Raises:
        ConfigError: On the first invalid key.
    """
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        raise ConfigError("<root>", f"expected a mapping, got {type(raw).__name__}", EXAMPLE.replace("\n", "\n    "))
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (known: {', '.join(sorted(_TOP))})",
                          EXAMPLE.replace("\n", "\n    "))
    instance_id = raw.get("instance_id") or ""
    if not isinstance(instance_id, str):
        raise ConfigError("instance_id", f"expected a string, got {instance_id!r}", "instance_id: replica-a")
    stages = raw.get("stages") or []
    if not isinstance(stages, list) or any(not isinstance(x, str) or ":" not in x for x in stages):
        raise ConfigError("stages", f"expected a list of 'module:factory' strings, got {stages!r}",
                          "stages: [mypackage.stages:create_stage]")
    stages_config = raw.get("stages_config") or {}
    if not isinstance(stages_config, Mapping):
        raise ConfigError("stages_config", "expected a mapping", "stages_config: {threshold: 0.5}")
    return ProcessorConfig(
        instance_id=instance_id, receiver=_receiver(raw), store=_store(raw), metrics=_metrics(raw),
        limits=_limits(raw), reference=_reference(raw), relabel=_relabel(raw), stages=tuple(stages),
        stages_config=dict(stages_config),
        memory_limiter=_memory_limiter(raw),
        shutdown_grace=parse_duration(raw.get("shutdown_grace", DEFAULT_SHUTDOWN_GRACE_S), "shutdown_grace",
                                      "shutdown_grace: 20s"),
    )


_ENV_REF = re.compile(r"\$\$|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def dsn_without_password(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL or key=value form): safe to log and to show in errors."""
    dsn = re.sub(r"^(postgres(?:ql)?://[^:/@?]*):[^@/?]*@", r"\1:***@", dsn)
    dsn = re.sub(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", "password=***", dsn)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", dsn)


def substitute_env(raw: Any, environ: Mapping[str, str] | None = None, key: str = "") -> Any:
    """Replace ``${env:NAME}`` and ``${env:NAME:-default}`` in every string value (``$$`` is a literal ``$``).

    Substitution happens after YAML parsing, so a value from the environment is never parsed as YAML (a password
    with ``:`` or ``#`` stays a string), like the collector's ``${env:...}`` in configuration values.

    Raises:
        ConfigError: A referenced variable is unset and has no default.
    """
    env = os.environ if environ is None else environ
    if isinstance(raw, str):
        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            value = env.get(name)
            if value is None:
                if default is None:
                    raise ConfigError(key or "<root>", f"environment variable {name} is not set",
                                      f"${{env:{name}}} with {name} exported, or ${{env:{name}:-default}}")
                return default
            return value
        return _ENV_REF.sub(one, raw)
    if isinstance(raw, Mapping):
        return {k: substitute_env(v, env, f"{key}.{k}" if key else str(k)) for k, v in raw.items()}
    if isinstance(raw, list):
        return [substitute_env(v, env, f"{key}[{i}]") for i, v in enumerate(raw)]
    return raw


def load(path: str | Path) -> ProcessorConfig:
    """Read and validate a YAML config file (``${env:NAME}`` references are substituted, see :func:`substitute_env`).

    Raises:
        ConfigError: When the file cannot be read, is not YAML, a referenced variable is unset, or a key is invalid.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read {path}: {exc}", "otel-ml processor --config processor.yaml") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("<file>", f"{path} is not valid YAML: {exc}", EXAMPLE.replace("\n", "\n    ")) from exc
    return from_mapping(substitute_env(raw))


def reference_table() -> str:
    """Markdown table of every config key (the README section between the processor-config markers)."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for k in CONFIG_KEYS:
        lines.append(f"| `{k.key}` | {k.type} | `{k.default}` | {k.doc} |")
    return "\n".join(lines)


README_START: Final = "<!-- processor-config:start -->"
README_END: Final = "<!-- processor-config:end -->"


def readme_block() -> str:
    """The generated README block, markers included."""
    return (f"{README_START}\n<!-- generated from otel_ml/processor/config.py: "
            f"python -c 'from otel_ml.processor.config import write_readme; write_readme()' -->\n"
            f"{reference_table()}\n{README_END}")


def write_readme(path: str | Path = "README.md") -> bool:
    """Replace the block between the markers in ``path`` (appended with a heading when absent); True if changed."""
    p = Path(path)
    text = p.read_text()
    start, end = text.find(README_START), text.find(README_END)
    if start >= 0 and end > start:
        new = text[:start] + readme_block() + text[end + len(README_END):]
    else:
        new = text.rstrip("\n") + "\n\n## Processor configuration\n\n`otel-ml processor --config processor.yaml`; " \
            "every key is optional.\n\n" + readme_block() + "\n"
    if new != text:
        p.write_text(new)
    return new != text
