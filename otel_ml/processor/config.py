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

DEFAULT_GRPC_ENDPOINT: Final = "0.0.0.0:4317"
DEFAULT_HTTP_ENDPOINT: Final = "0.0.0.0:4318"
DEFAULT_MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_REQUESTS: Final = 8
DEFAULT_RETRY_AFTER_S: Final = 1
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
receiver:
  grpc: {endpoint: 0.0.0.0:4317}
  http: {endpoint: 0.0.0.0:4318}
  max_request_bytes: 16777216
  max_inflight_requests: 8
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
class ReceiverConfig:
    """OTLP receivers (``receiver:``)."""

    grpc_endpoint: str | None = DEFAULT_GRPC_ENDPOINT
    http_endpoint: str | None = DEFAULT_HTTP_ENDPOINT
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS
    retry_after: int = DEFAULT_RETRY_AFTER_S


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


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Metric output (``metrics:``)."""

    otlp: OtlpMetricsConfig | None = field(default_factory=OtlpMetricsConfig)
    prometheus_endpoint: str | None = None
    cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT
    cardinality_idle: float = DEFAULT_CARDINALITY_IDLE_S
    cardinality_admission: int = DEFAULT_CARDINALITY_ADMISSION
    series_limit: int = DEFAULT_SERIES_LIMIT
    ranking_k: tuple[int, ...] = DEFAULT_RANKING_K
    auc_window: int = DEFAULT_AUC_WINDOW


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
    KeyDoc("receiver.grpc.endpoint", "host:port or null", DEFAULT_GRPC_ENDPOINT,
           "OTLP/gRPC `LogsService` (gzip accepted); `receiver.grpc: null` disables it."),
    KeyDoc("receiver.http.endpoint", "host:port or null", DEFAULT_HTTP_ENDPOINT,
           "OTLP/HTTP `POST /v1/logs` (protobuf, `Content-Encoding: gzip`); `receiver.http: null` disables it."),
    KeyDoc("receiver.max_request_bytes", "int", str(DEFAULT_MAX_REQUEST_BYTES),
           "Largest request (decompressed); larger: HTTP 413 / gRPC RESOURCE_EXHAUSTED, counted `too_large` "
           "(beyond 4x this, grpc itself refuses, uncounted)."),
    KeyDoc("receiver.max_inflight_requests", "int", str(DEFAULT_MAX_INFLIGHT_REQUESTS),
           "Requests parsed or waiting for the store at once; beyond: gRPC UNAVAILABLE / HTTP 503 + Retry-After."),
    KeyDoc("receiver.retry_after", "int seconds", str(DEFAULT_RETRY_AFTER_S),
           "`Retry-After` of HTTP 503/429 answers."),
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
    KeyDoc("metrics.prometheus.endpoint", "host:port", "disabled",
           "Optional Prometheus scrape endpoint (`/metrics`) for setups without a collector."),
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


def _endpoint(section: Mapping[str, Any], name: str, default: str, example: str) -> str | None:
    if name not in section:
        return default
    value = section[name]
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) - {"endpoint"}:
        raise ConfigError(f"receiver.{name}", "expected {endpoint: host:port} or null", example)
    endpoint = value.get("endpoint", default)
    if not isinstance(endpoint, str) or not re.match(r"^[^:\s]*:\d+$", endpoint):
        raise ConfigError(f"receiver.{name}.endpoint", f"expected host:port, got {endpoint!r}", example)
    return endpoint


def _receiver(raw: Mapping[str, Any]) -> ReceiverConfig:
    ex = "receiver: {grpc: {endpoint: 0.0.0.0:4317}, http: null, max_request_bytes: 16777216}"
    s = _section(raw, "receiver", {"grpc", "http", "max_request_bytes", "max_inflight_requests", "retry_after"}, ex)
    return ReceiverConfig(
        grpc_endpoint=_endpoint(s, "grpc", DEFAULT_GRPC_ENDPOINT, ex),
        http_endpoint=_endpoint(s, "http", DEFAULT_HTTP_ENDPOINT, ex),
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
        replica_timeout=parse_duration(s.get("replica_timeout", DEFAULT_REPLICA_TIMEOUT_S), "store.replica_timeout",
                                       "store: {backend: postgres, dsn: ..., replica_timeout: 5m}"),
        lock_timeout=parse_duration(s.get("lock_timeout", DEFAULT_STORE_LOCK_TIMEOUT_S), "store.lock_timeout",
                                    "store: {lock_timeout: 5s}"),
    )


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
        elif not isinstance(o, Mapping) or set(o) - {"endpoint", "protocol", "interval"}:
            raise ConfigError("metrics.otlp", "expected {endpoint, protocol, interval} or null", ex)
        else:
            endpoint = o.get("endpoint", DEFAULT_OTLP_METRICS_ENDPOINT)
            if not isinstance(endpoint, str) or not re.match(r"^https?://[^/\s]+", endpoint):
                raise ConfigError("metrics.otlp.endpoint", f"expected http(s)://host:port, got {endpoint!r}", ex)
            protocol = o.get("protocol", DEFAULT_OTLP_METRICS_PROTOCOL)
            if protocol not in PROTOCOLS:
                raise ConfigError("metrics.otlp.protocol", f"expected one of {', '.join(PROTOCOLS)}, got {protocol!r}",
                                  ex)
            otlp = OtlpMetricsConfig(endpoint, protocol, parse_duration(
                o.get("interval", DEFAULT_EXPORT_INTERVAL_S), "metrics.otlp.interval", ex))
    prom: str | None = None
    if s.get("prometheus") is not None:
        p = s["prometheus"]
        endpoint = p.get("endpoint", DEFAULT_PROMETHEUS_ENDPOINT) if isinstance(p, Mapping) else None
        if not isinstance(endpoint, str) or not re.match(r"^[^:\s]*:\d+$", endpoint):
            raise ConfigError("metrics.prometheus.endpoint", f"expected host:port, got {endpoint!r}", ex)
        prom = endpoint
    ks = s.get("ranking_k", list(DEFAULT_RANKING_K))
    if not isinstance(ks, list) or not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError("metrics.ranking_k", f"expected a non-empty list of positive integers, got {ks!r}", ex)
    return MetricsConfig(
        otlp=otlp, prometheus_endpoint=prom,
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


_TOP = {"instance_id", "receiver", "store", "metrics", "limits", "reference", "relabel", "stages", "stages_config"}


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
