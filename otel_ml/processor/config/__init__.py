"""Processor configuration: YAML -> frozen dataclasses, validated at start-up.

Every key has a named default (``DEFAULT_*``) and a row in :data:`CONFIG_KEYS`, from which the README reference table
is generated (:func:`reference_table`; a test checks the README is up to date). Errors raise
:class:`ConfigError` naming the key and showing a valid example; the CLI turns them into exit status 2.

Usage::

    from otel_ml.processor.config import load, write_readme

    config = load("processor.yaml")  # ConfigError on the first invalid key
    write_readme()  # regenerate the README table after adding or changing a key

Modules (this package re-exports their public names; import from ``otel_ml.processor.config``):

- :mod:`~otel_ml.processor.config.loading`: :class:`ProcessorConfig`, :func:`from_mapping`, :func:`load`,
  ``${env:NAME}`` substitution (:func:`substitute_env`), top-level keys.
- :mod:`~otel_ml.processor.config.validation`: :class:`ConfigError` and the checks of single values
  (:func:`parse_duration`, integers, host:port, files, mappings).
- :mod:`~otel_ml.processor.config.receivers`: ``receiver:`` (gRPC, HTTP), server TLS and client auth.
- :mod:`~otel_ml.processor.config.memory_limiter`: ``memory_limiter:``.
- :mod:`~otel_ml.processor.config.store`: ``store:`` and :func:`dsn_without_password`.
- :mod:`~otel_ml.processor.config.metrics`: ``metrics:`` (OTLP export, Prometheus endpoint, cardinality caps).
- :mod:`~otel_ml.processor.config.limits`: ``limits:`` (per-record limits of the decoder).
- :mod:`~otel_ml.processor.config.estimation`: ``reference:`` and ``relabel:`` (estimation stage).
- :mod:`~otel_ml.processor.config.readme`: :data:`CONFIG_KEYS` and the README table writer.

A new key: add it to its section's dataclass and parser, give it a ``DEFAULT_*`` and a :class:`KeyDoc` row in
:data:`CONFIG_KEYS`, and run :func:`write_readme`.
"""

from otel_ml.processor.config.estimation import (
    DEFAULT_REFERENCE_DIRECTORY,
    DEFAULT_RELABEL_MAX_SAMPLES,
    DEFAULT_RELABEL_PATH,
    DEFAULT_RELOAD_INTERVAL_S,
    ReferenceConfig,
    RelabelConfig,
)
from otel_ml.processor.config.limits import (
    DEFAULT_CLASS_BYTES,
    DEFAULT_CLASSES_PER_RECORD,
    DEFAULT_FEATURE_NAME_BYTES,
    DEFAULT_FEATURE_VALUE_BYTES,
    DEFAULT_FEATURES_PER_RECORD,
    DEFAULT_MODEL_BYTES,
    DEFAULT_PREDICTION_ID_BYTES,
    DEFAULT_SEGMENT_BYTES,
    DEFAULT_SEGMENTS_PER_RECORD,
    LimitsConfig,
)
from otel_ml.processor.config.loading import (
    DEFAULT_SHUTDOWN_GRACE_S,
    EXAMPLE,
    ProcessorConfig,
    from_mapping,
    load,
    substitute_env,
)
from otel_ml.processor.config.memory_limiter import (
    DEFAULT_MEMORY_CHECK_INTERVAL_S,
    DEFAULT_MEMORY_LIMIT_PERCENTAGE,
    DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE,
    MemoryLimiterConfig,
)
from otel_ml.processor.config.metrics import (
    DEFAULT_AUC_WINDOW,
    DEFAULT_CARDINALITY_ADMISSION,
    DEFAULT_CARDINALITY_IDLE_S,
    DEFAULT_CARDINALITY_LIMIT,
    DEFAULT_EXPORT_INTERVAL_S,
    DEFAULT_OTLP_METRICS_ENDPOINT,
    DEFAULT_OTLP_METRICS_PROTOCOL,
    DEFAULT_PROMETHEUS_ENDPOINT,
    DEFAULT_RANKING_K,
    DEFAULT_SERIES_LIMIT,
    PROTOCOLS,
    ClientTlsConfig,
    MetricsConfig,
    OtlpMetricsConfig,
    PrometheusConfig,
)
from otel_ml.processor.config.readme import (
    CONFIG_KEYS,
    README_END,
    README_START,
    KeyDoc,
    readme_block,
    reference_table,
    write_readme,
)
from otel_ml.processor.config.receivers import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_INFLIGHT_REQUESTS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_READ_HEADER_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_RETRY_AFTER_S,
    DEFAULT_TLS_MIN_VERSION,
    TLS_VERSIONS,
    AuthConfig,
    BasicAuthConfig,
    GrpcReceiverConfig,
    HttpReceiverConfig,
    ReceiverConfig,
    TlsConfig,
)
from otel_ml.processor.config.store import (
    BACKENDS,
    DEFAULT_EXPIRE_INTERVAL_S,
    DEFAULT_LABEL_WINDOW_S,
    DEFAULT_MAX_PENDING,
    DEFAULT_REPLICA_TIMEOUT_S,
    DEFAULT_STORE_BACKEND,
    DEFAULT_STORE_LOCK_TIMEOUT_S,
    DEFAULT_STORE_PATH,
    DEFAULT_STORE_SCHEMA,
    StoreConfig,
    dsn_without_password,
)
from otel_ml.processor.config.validation import (
    ConfigError,
    parse_duration,
)

__all__ = [
    "BACKENDS",
    "CONFIG_KEYS",
    "DEFAULT_AUC_WINDOW",
    "DEFAULT_CARDINALITY_ADMISSION",
    "DEFAULT_CARDINALITY_IDLE_S",
    "DEFAULT_CARDINALITY_LIMIT",
    "DEFAULT_CLASSES_PER_RECORD",
    "DEFAULT_CLASS_BYTES",
    "DEFAULT_EXPIRE_INTERVAL_S",
    "DEFAULT_EXPORT_INTERVAL_S",
    "DEFAULT_FEATURES_PER_RECORD",
    "DEFAULT_FEATURE_NAME_BYTES",
    "DEFAULT_FEATURE_VALUE_BYTES",
    "DEFAULT_GRPC_ENDPOINT",
    "DEFAULT_HTTP_ENDPOINT",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_LABEL_WINDOW_S",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_INFLIGHT_REQUESTS",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MEMORY_CHECK_INTERVAL_S",
    "DEFAULT_MEMORY_LIMIT_PERCENTAGE",
    "DEFAULT_MEMORY_SPIKE_LIMIT_PERCENTAGE",
    "DEFAULT_MODEL_BYTES",
    "DEFAULT_OTLP_METRICS_ENDPOINT",
    "DEFAULT_OTLP_METRICS_PROTOCOL",
    "DEFAULT_PREDICTION_ID_BYTES",
    "DEFAULT_PROMETHEUS_ENDPOINT",
    "DEFAULT_RANKING_K",
    "DEFAULT_READ_HEADER_TIMEOUT_S",
    "DEFAULT_READ_TIMEOUT_S",
    "DEFAULT_REFERENCE_DIRECTORY",
    "DEFAULT_RELABEL_MAX_SAMPLES",
    "DEFAULT_RELABEL_PATH",
    "DEFAULT_RELOAD_INTERVAL_S",
    "DEFAULT_REPLICA_TIMEOUT_S",
    "DEFAULT_RETRY_AFTER_S",
    "DEFAULT_SEGMENTS_PER_RECORD",
    "DEFAULT_SEGMENT_BYTES",
    "DEFAULT_SERIES_LIMIT",
    "DEFAULT_SHUTDOWN_GRACE_S",
    "DEFAULT_STORE_BACKEND",
    "DEFAULT_STORE_LOCK_TIMEOUT_S",
    "DEFAULT_STORE_PATH",
    "DEFAULT_STORE_SCHEMA",
    "DEFAULT_TLS_MIN_VERSION",
    "EXAMPLE",
    "PROTOCOLS",
    "README_END",
    "README_START",
    "TLS_VERSIONS",
    "AuthConfig",
    "BasicAuthConfig",
    "ClientTlsConfig",
    "ConfigError",
    "GrpcReceiverConfig",
    "HttpReceiverConfig",
    "KeyDoc",
    "LimitsConfig",
    "MemoryLimiterConfig",
    "MetricsConfig",
    "OtlpMetricsConfig",
    "ProcessorConfig",
    "PrometheusConfig",
    "ReceiverConfig",
    "ReferenceConfig",
    "RelabelConfig",
    "StoreConfig",
    "TlsConfig",
    "dsn_without_password",
    "from_mapping",
    "load",
    "parse_duration",
    "readme_block",
    "reference_table",
    "substitute_env",
    "write_readme",
]
