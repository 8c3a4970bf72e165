"""The README reference table of every config key: :data:`CONFIG_KEYS` (one :class:`KeyDoc` per key, in README
order) and :func:`write_readme`, which regenerates the README block (a test checks it is up to date).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from otel_ml.processor.config.estimation import DEFAULT_RELABEL_MAX_SAMPLES, DEFAULT_RELABEL_PATH
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
)
from otel_ml.processor.config.metrics import (
    DEFAULT_AUC_WINDOW,
    DEFAULT_CARDINALITY_ADMISSION,
    DEFAULT_CARDINALITY_LIMIT,
    DEFAULT_OTLP_METRICS_ENDPOINT,
    DEFAULT_OTLP_METRICS_PROTOCOL,
    DEFAULT_SERIES_LIMIT,
)
from otel_ml.processor.config.receivers import (
    DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_INFLIGHT_REQUESTS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_RETRY_AFTER_S,
)
from otel_ml.processor.config.store import (
    DEFAULT_MAX_PENDING,
    DEFAULT_STORE_BACKEND,
    DEFAULT_STORE_PATH,
    DEFAULT_STORE_SCHEMA,
)


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
    return (f"{README_START}\n<!-- generated from otel_ml/processor/config/readme.py: "
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
