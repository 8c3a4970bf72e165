"""Attribute keys of otel-ml events and metrics: the single source of truth.

Every key is registered with its meaning, value type, cardinality and whether it may appear on metrics
(:data:`ATTRIBUTES`). Unbounded values (prediction ids, feature values) go on events only, never on metrics.
Metric attribute values are additionally capped per model by the processor (overflow value :data:`OVERFLOW_VALUE`).

The ``ml.*`` namespace is not claimed by the OpenTelemetry semantic conventions today (a proposal is open); keeping
every name here makes a later rename a one-file change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

ValueType = Literal["string", "double", "int", "bool", "string[]", "double[]", "any"]
Cardinality = Literal["bounded", "low", "medium", "unbounded"]


@dataclass(frozen=True, slots=True)
class AttributeSpec:
    """Description of one attribute key.

    Attributes:
        key: The attribute key on the wire (dotted OTel style).
        type: OTLP value type.
        cardinality: ``bounded`` (a fixed enum), ``low`` (tens), ``medium`` (hundreds, capped on metrics) or
            ``unbounded`` (never on metrics).
        on_metrics: Whether the attribute may be put on metric data points.
        on_events: Whether the attribute appears on events.
        doc: What the attribute means.
    """

    key: str
    type: ValueType
    cardinality: Cardinality
    on_metrics: bool
    on_events: bool
    doc: str


ML_NAMESPACE: Final = "ml."
"""Prefix of the otel-ml attribute keys (the registry also holds a few OpenTelemetry ones, e.g. ``error.type``)."""

ATTRIBUTES: dict[str, AttributeSpec] = {}
"""Registry of every attribute key, by key."""

PREFIX_ATTRIBUTES: dict[str, AttributeSpec] = {}
"""Registry of attribute key prefixes (``ml.feature.``, ``ml.segment.``), by prefix."""


def _register(
    key: str, type_: ValueType, cardinality: Cardinality, *, metrics: bool, events: bool = True, doc: str
) -> str:
    if cardinality == "unbounded" and metrics:
        raise ValueError(f"{key}: an unbounded attribute may not appear on metrics")
    spec = AttributeSpec(key, type_, cardinality, metrics, events, doc)
    (PREFIX_ATTRIBUTES if key.endswith(".") else ATTRIBUTES)[key] = spec
    return key


# --- identity of the model -----------------------------------------------------------------------------------------
ML_MODEL_NAME: Final = _register(
    "ml.model.name", "string", "low", metrics=True,
    doc="Name of the model (e.g. `fraud`). Required on every event; the join key's namespace.")
ML_MODEL_VERSION: Final = _register(
    "ml.model.version", "string", "low", metrics=True,
    doc="Version of the model that made the prediction (e.g. `2024-06-01` or a git sha). Optional on labels.")
ML_TASK: Final = _register(
    "ml.task", "string", "bounded", metrics=False,
    doc="Task of the model: `binary`, `multiclass`, `multilabel`, `regression` or `ranking` (see `Task`).")

# --- the prediction -------------------------------------------------------------------------------------------------
ML_PREDICTION_ID: Final = _register(
    "ml.prediction.id", "string", "unbounded", metrics=False,
    doc="Unique id of the prediction; labels refer to it. Events only, never a metric attribute.")
ML_PREDICTION_VALUE: Final = _register(
    "ml.prediction.value", "any", "unbounded", metrics=False,
    doc="Predicted value: the class as a string (binary, multiclass) or a double (regression).")
ML_PREDICTION_VALUES: Final = _register(
    "ml.prediction.values", "string[]", "unbounded", metrics=False,
    doc="Predicted set (multilabel: the labels predicted for the sample) or ranked list, best first (ranking).")
ML_PREDICTION_SCORE: Final = _register(
    "ml.prediction.score", "double", "unbounded", metrics=False,
    doc="Binary: probability of the positive class (the last of `ml.prediction.classes`, or `1`). "
        "Other tasks: the model's confidence in its prediction.")
ML_PREDICTION_SCORES: Final = _register(
    "ml.prediction.scores", "double[]", "unbounded", metrics=False,
    doc="Per-class probabilities (multiclass, multilabel, binary), aligned with `ml.prediction.classes`.")
ML_PREDICTION_CLASSES: Final = _register(
    "ml.prediction.classes", "string[]", "low", metrics=False,
    doc="Class order of `ml.prediction.scores` (and, for binary, `[negative, positive]`).")

# --- the label (ground truth) --------------------------------------------------------------------------------------
ML_LABEL_VALUE: Final = _register(
    "ml.label.value", "any", "unbounded", metrics=False,
    doc="True value: the class as a string (binary, multiclass) or a double (regression).")
ML_LABEL_VALUES: Final = _register(
    "ml.label.values", "string[]", "unbounded", metrics=False,
    doc="True set (multilabel) or the relevant items (ranking).")
ML_LABEL_RELEVANCE: Final = _register(
    "ml.label.relevance", "double[]", "unbounded", metrics=False,
    doc="Ranking only: graded relevance aligned with `ml.label.values` (default 1 for every listed item).")

# --- features and segments (prefixes) ------------------------------------------------------------------------------
ML_FEATURE_PREFIX: Final = _register(
    "ml.feature.", "any", "unbounded", metrics=False,
    doc="Prefix of one selected input feature: `ml.feature.<name>` = its value (double, int, bool or string).")
ML_SEGMENT_PREFIX: Final = _register(
    "ml.segment.", "string", "medium", metrics=False,
    doc="Prefix of one segment dimension on events: `ml.segment.<dimension>` = its value (e.g. `ml.segment.region`).")

# --- metric-only attributes ----------------------------------------------------------------------------------------
ML_SEGMENT: Final = _register(
    "ml.segment", "string", "medium", metrics=True, events=False,
    doc="Segment of a metric point: the event's segment dimensions as `dim=value` joined with `,` in key order "
        "(e.g. `region=eu`); absent when the prediction has no segment. Capped per model.")
ML_CLASS: Final = _register(
    "ml.class", "string", "medium", metrics=True, events=False,
    doc="A class (or label, for multilabel) on per-class metrics. Capped per model.")
ML_OUTCOME: Final = _register(
    "ml.outcome", "string", "bounded", metrics=True, events=False,
    doc="Per-class outcome of a joined prediction: `tp`, `fp` or `fn` (see `Outcome`).")
ML_RANKING_K: Final = _register(
    "ml.ranking.k", "int", "bounded", metrics=True, events=False,
    doc="The k of precision@k / NDCG@k (configured per processor).")
ML_FEATURE_NAME: Final = _register(
    "ml.feature.name", "string", "medium", metrics=True, events=False,
    doc="Feature a drift metric is about.")
ML_DRIFT_METHOD: Final = _register(
    "ml.drift.method", "string", "bounded", metrics=True, events=False,
    doc="Drift statistic: `psi`, `jensen_shannon`, `ks` or `wasserstein`.")
ML_BIN: Final = _register(
    "ml.bin", "string", "low", metrics=True, events=False,
    doc="Bin of a reference distribution (feature, score or predictions-per-sample), e.g. `3` or `[0.5,0.75)`.")
ML_METRIC: Final = _register(
    "ml.metric", "string", "bounded", metrics=True, events=False,
    doc="Name of a quality metric a gauge refers to (e.g. `accuracy`, `f1_macro`, `mae`), see `QualityMetric`.")
ML_WEAK_SEGMENT: Final = _register(
    "ml.weak_segment", "string", "low", metrics=True, events=False,
    doc="A weak slice of the evaluation set a prediction falls in (e.g. `region=apac`, `n_labels>=4`).")
ML_ESTIMATOR: Final = _register(
    "ml.estimator", "string", "bounded", metrics=True, events=False,
    doc="Correctness estimator that produced an estimate: `cbpe`, `atc`, `learned`, `dle` or `blend`.")
ML_REASON: Final = _register(
    "ml.reason", "string", "bounded", metrics=True, events=False,
    doc="Why a record, event, sample or request was dropped, rejected, refused or selected (see `DropReason`, "
        "`RejectReason`, `RefuseReason`, `FailReason`, `AuthFailureReason`).")
ML_RECEIVER: Final = _register(
    "ml.receiver", "string", "bounded", metrics=True, events=False,
    doc="Processor endpoint a request or connection came in on (see `Receiver`): `grpc`, `http` (the OTLP "
        "receivers) or `prometheus` (the scrape endpoint).")
ML_ATTRIBUTE_KEY: Final = _register(
    "ml.attribute.key", "string", "bounded", metrics=True, events=False,
    doc="The metric attribute whose cardinality cap overflowed.")
ERROR_TYPE: Final = _register(
    "error.type", "string", "low", metrics=True, events=True,
    doc="OTel `error.type`: qualified name of the exception an instrumented inference raised.")

OTEL_METRIC_OVERFLOW: Final = _register(
    "otel.metric.overflow", "bool", "bounded", metrics=True, events=False,
    doc="Set (true) by the OpenTelemetry SDK on the one point into which it folds the attribute sets of an "
        "instrument beyond its cardinality limit (counted by the processor in `ml.processor.series.overflow`).")

OVERFLOW_VALUE: Final = "_other"
"""Value a capped metric attribute takes once its per-model cardinality limit is reached."""


class Task:
    """Values of ``ml.task``."""

    BINARY: Final = "binary"
    MULTICLASS: Final = "multiclass"
    MULTILABEL: Final = "multilabel"
    REGRESSION: Final = "regression"
    RANKING: Final = "ranking"
    ALL: Final = (BINARY, MULTICLASS, MULTILABEL, REGRESSION, RANKING)
    CLASSIFICATION: Final = (BINARY, MULTICLASS)


class Outcome:
    """Values of ``ml.outcome``."""

    TP: Final = "tp"
    FP: Final = "fp"
    FN: Final = "fn"


class StoreErrorReason:
    """Values of ``ml.reason`` on ``ml.processor.store.errors``: why a join store operation failed.

    Every such failure is retryable: the step's transaction is rolled back, its requests are answered with a
    retryable code, and the store recovers by itself when the cause goes away.
    """

    FULL: Final = "full"
    """The disk (or the database's size limit) is full."""
    IO: Final = "io"
    """An I/O error from the operating system (failing disk, filesystem shut down, lost device)."""
    NOMEM: Final = "nomem"
    """The database library could not allocate memory."""
    LOCKED: Final = "locked"
    """Another process held the database lock longer than ``store.lock_timeout``."""
    READONLY: Final = "readonly"
    """The store's filesystem or files are read-only (remounted read-only after an error, wrong permissions)."""
    CORRUPT: Final = "corrupt"
    """The database file is damaged (page-level corruption the database library detected)."""
    UNAVAILABLE: Final = "unavailable"
    """The backend cannot be reached (a database server down or refusing connections)."""
    OTHER: Final = "other"
    """Any other storage failure (see the processor log)."""


class DropReason:
    """Values of ``ml.reason`` on ``ml.client.events.dropped`` (client-side drops)."""

    QUEUE_FULL: Final = "queue_full"
    EXPORT_FAILED: Final = "export_failed"
    SHUTDOWN: Final = "shutdown"
    INVALID: Final = "invalid"


class RejectReason:
    """Values of ``ml.reason`` on ``ml.processor.records.rejected`` (processor-side rejections)."""

    MISSING_ATTRIBUTE: Final = "missing_attribute"
    WRONG_TYPE: Final = "wrong_type"
    UNKNOWN_TASK: Final = "unknown_task"
    NOT_FINITE: Final = "not_finite"
    TOO_LARGE: Final = "too_large"
    """A whole request beyond ``receiver.max_request_bytes`` (counted as one record)."""
    DECODE_ERROR: Final = "decode_error"
    TASK_MISMATCH: Final = "task_mismatch"
    TOO_LONG: Final = "too_long"
    """A value (id, model name or version, class, segment dimension or value) beyond its ``limits.*`` byte length."""
    TOO_MANY: Final = "too_many"
    """More segments (``limits.segments_per_record``) or list items (``limits.classes_per_record``) than allowed."""
    INTERNAL_ERROR: Final = "internal_error"
    """The decoder failed on the record in a way no precise check caught (a bug: logged with the traceback); the
    record is rejected alone and the rest of the request is processed."""


class FeatureDropReason:
    """Values of ``ml.reason`` on ``ml.processor.features.dropped`` (features removed from an accepted record)."""

    TOO_LONG: Final = "too_long"
    """The feature name (``limits.feature_name_bytes``) or its string value (``limits.feature_value_bytes``)."""
    TOO_MANY: Final = "too_many"
    """Features beyond ``limits.features_per_record`` (in wire order)."""


class OverflowReason:
    """Values of ``ml.reason`` on ``ml.processor.attribute.overflow`` (why a value was mapped to ``_other``)."""

    LIMIT: Final = "limit"
    """The per-model cap (``metrics.cardinality_limit``) is full and no admitted value is idle long enough to free
    its slot (``metrics.cardinality_idle``)."""
    ADMISSION: Final = "admission"
    """More than half the cap is taken: a new value needs ``metrics.cardinality_admission`` sightings (separate
    processing steps) before it gets its own series."""
    SERIES: Final = "series"
    """The metric already has ``metrics.series_limit`` points: a new combination of attribute values is folded
    into the point whose capped attributes are all ``_other``."""


class Receiver:
    """Values of ``ml.receiver``."""

    GRPC: Final = "grpc"
    HTTP: Final = "http"
    PROMETHEUS: Final = "prometheus"


class RefuseReason:
    """Values of ``ml.reason`` on ``ml.processor.requests.refused``: retryable refusals (gRPC ``UNAVAILABLE``, HTTP
    503 + ``Retry-After``), answered before the request body is read where the protocol allows; the sender keeps
    the data and retries."""

    OVERLOADED: Final = "overloaded"
    """``receiver.max_inflight_requests`` requests were already being processed."""
    MEMORY_LIMIT: Final = "memory_limit"
    """The memory limiter's soft limit would be exceeded (``memory_limiter``)."""
    SHUTTING_DOWN: Final = "shutting_down"
    """The processor is draining before it exits."""
    STORE_UNAVAILABLE: Final = "store_unavailable"
    """The commit failed or timed out; nothing of the request was acknowledged."""
    TOO_MANY_CONNECTIONS: Final = "too_many_connections"
    """The HTTP endpoint already held ``max_connections`` connections (answered 503 and closed)."""


class FailReason:
    """Values of ``ml.reason`` on ``ml.processor.requests.failed``: requests answered with a permanent error at the
    request level (malformed framing, wrong media type, timeouts, internal errors). Unreadable or oversized payloads
    stay counted as records (``ml.processor.records.rejected{ml.reason=decode_error|too_large}``)."""

    BAD_REQUEST: Final = "bad_request"
    """HTTP framing the parser refused (invalid, negative or conflicting ``Content-Length``, bad chunking, header
    block too large, malformed request line): 400 and the connection is closed."""
    HEADER_TIMEOUT: Final = "header_timeout"
    """The request line and headers did not arrive within ``read_header_timeout`` (slow clients, slowloris)."""
    READ_TIMEOUT: Final = "read_timeout"
    """The body did not arrive within ``read_timeout`` of the headers: 408 and the connection is closed."""
    UNSUPPORTED_MEDIA_TYPE: Final = "unsupported_media_type"
    """``Content-Type`` other than ``application/x-protobuf`` or ``Content-Encoding`` other than gzip: 415."""
    NOT_FOUND: Final = "not_found"
    """A path the endpoint does not serve: 404."""
    METHOD_NOT_ALLOWED: Final = "method_not_allowed"
    """A method other than ``POST`` on ``/v1/logs`` (or other than ``GET`` on ``/metrics``): 405."""
    CLIENT_DISCONNECTED: Final = "client_disconnected"
    """The client closed the connection before sending the whole body (nothing acknowledged)."""
    INTERNAL_ERROR: Final = "internal_error"
    """An unexpected exception; answered gRPC ``INTERNAL`` / HTTP 500 (never ``UNKNOWN`` or a dropped connection)
    with a bounded message, and logged with its traceback."""


class AuthFailureReason:
    """Values of ``ml.reason`` on ``ml.processor.auth.failures``."""

    MISSING_CREDENTIALS: Final = "missing_credentials"
    """No ``authorization`` header / metadata (or another scheme than the configured one)."""
    INVALID_CREDENTIALS: Final = "invalid_credentials"
    """A token or password that matches none of the configured ones."""
    TLS_HANDSHAKE: Final = "tls_handshake"
    """A TLS handshake that failed for another reason than a certificate (plaintext on a TLS port, protocol
    version below ``min_version``, garbage)."""
    TLS_CERTIFICATE: Final = "tls_certificate"
    """A TLS handshake that failed on a certificate: the client presented none or one the ``client_ca_file`` does
    not sign (mTLS), or the client rejected the server's certificate (unknown CA)."""


class UnknownReason:
    """Values of ``ml.reason`` on ``ml.estimated.unknown_predictions``: why a prediction's correctness is unknown."""

    UNSEEN_CLASS: Final = "unseen_class"
    """The predicted class is not among the reference's classes."""
    OUT_OF_SUPPORT: Final = "out_of_support"
    """The prediction's features are farther from the reference than any of its own rows."""


class QualityMetric:
    """Values of ``ml.metric`` (baseline and estimate gauges)."""

    ACCURACY: Final = "accuracy"
    F1: Final = "f1"
    """F1 of the positive class (binary)."""
    F1_MACRO: Final = "f1_macro"
    PRECISION_MACRO: Final = "precision_macro"
    RECALL_MACRO: Final = "recall_macro"
    ROC_AUC: Final = "roc_auc"
    MAE: Final = "mae"
    RMSE: Final = "rmse"
    MRR: Final = "mrr"
    PRECISION_AT_K: Final = "precision_at_k"
    NDCG_AT_K: Final = "ndcg_at_k"
    EXACT_MATCH: Final = "exact_match"
    PRECISION_MICRO: Final = "precision_micro"
    """Multilabel: tp / (tp + fp) pooled over every label (weak-segment search)."""
    RECALL_MICRO: Final = "recall_micro"
    """Multilabel: tp / (tp + fn) pooled over every label."""
    F1_MICRO: Final = "f1_micro"
    """Multilabel: 2 tp / (2 tp + fp + fn) pooled over every label."""
    LABELS_PER_SAMPLE: Final = "labels_per_sample"
