"""Metric names, instruments and units of otel-ml: the single source of truth.

Two families:

* ``ml.client.*``: recorded inside the instrumented application (latency, prediction counts, drops).
* everything else: computed by the otel-ml processor from joined events (realized quality), from the reference
  artifact (estimated quality, drift) and about itself (``ml.processor.*``).

Counters and sums are additive: Prometheus can window them (``increase``/``rate``) and sum them across processor
replicas; ratios are recording rules (``alerts/``). Gauges are used only where a value does not decompose (ROC-AUC,
drift distances, baselines). Prometheus names follow the collector's ``prometheus`` exporter translation (see
:func:`otel_ml.semconv.prometheus.prom_name`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from otel_ml.semconv import attributes as a

Instrument = Literal["counter", "updowncounter", "histogram", "gauge"]
Source = Literal["client", "processor"]

DURATION_BUCKETS_S: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Inference latency buckets in seconds: sub-millisecond tabular models up to multi-second deep models."""

LABEL_DELAY_BUCKETS_S: Final = (
    1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0, 3 * 86400.0, 7 * 86400.0,
)
"""Label delay buckets in seconds: from immediate feedback up to the default 7-day label window."""

SCORE_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
"""Score / probability buckets."""

SET_SIZE_BUCKETS: Final = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0)
"""Predictions-per-sample (multilabel set size) buckets."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """Description of one metric.

    Attributes:
        name: OTel metric name (dotted, no unit, no ``_total``).
        instrument: ``counter`` (monotonic sum), ``updowncounter`` (non-monotonic sum), ``histogram`` or ``gauge``.
        unit: UCUM unit (``s``, ``1``) or an annotation in braces (``{prediction}``), which adds no name suffix.
        attributes: Attribute keys a data point may carry (all must be allowed on metrics).
        source: ``client`` (instrumented application) or ``processor``.
        doc: What it measures and how to use it in PromQL.
        buckets: Explicit histogram bucket boundaries, for histograms.
    """

    name: str
    instrument: Instrument
    unit: str
    attributes: tuple[str, ...]
    source: Source
    doc: str
    buckets: tuple[float, ...] = ()


METRICS: dict[str, MetricSpec] = {}
"""Registry of every metric, by OTel name."""


def _metric(
    name: str, instrument: Instrument, unit: str, attrs: tuple[str, ...], source: Source, doc: str,
    buckets: tuple[float, ...] = (),
) -> MetricSpec:
    for key in attrs:
        spec = a.ATTRIBUTES[key]
        if not spec.on_metrics:
            raise ValueError(f"{name}: attribute {key} may not appear on metrics")
    if name in METRICS:
        raise ValueError(f"duplicate metric {name}")
    m = MetricSpec(name, instrument, unit, attrs, source, doc, buckets)
    METRICS[name] = m
    return m


_MODEL = (a.ML_MODEL_NAME, a.ML_MODEL_VERSION)
_SEG = (*_MODEL, a.ML_SEGMENT)

# --- client side (instrumented application) ------------------------------------------------------------------------
CLIENT_INFERENCE_DURATION: Final = _metric(
    "ml.client.inference.duration", "histogram", "s", (*_MODEL, a.ERROR_TYPE), "client",
    "Wall time of one instrumented inference call (a batch call counts once).", DURATION_BUCKETS_S)
CLIENT_PREDICTIONS: Final = _metric(
    "ml.client.predictions", "counter", "{prediction}", (*_MODEL, a.ML_CLASS), "client",
    "Predictions made, by predicted class (classification; capped, overflow `_other`).")
CLIENT_PREDICTION_SCORE: Final = _metric(
    "ml.client.prediction.score", "histogram", "1", _MODEL, "client",
    "Distribution of prediction scores (binary: positive-class probability; else confidence).", SCORE_BUCKETS)
CLIENT_INFERENCE_ERRORS: Final = _metric(
    "ml.client.inference.errors", "counter", "{error}", (*_MODEL, a.ERROR_TYPE), "client",
    "Instrumented inference calls that raised, by exception type.")
CLIENT_EVENTS_EXPORTED: Final = _metric(
    "ml.client.events.exported", "counter", "{event}", (a.ML_MODEL_NAME,), "client",
    "Prediction and label events accepted by the OTLP endpoint.")
CLIENT_EVENTS_DROPPED: Final = _metric(
    "ml.client.events.dropped", "counter", "{event}", (a.ML_MODEL_NAME, a.ML_REASON), "client",
    "Events the instrumentation dropped instead of slowing inference: queue_full, export_failed, shutdown, invalid.")
CLIENT_VALUES_TRUNCATED: Final = _metric(
    "ml.client.values.truncated", "counter", "{value}", (a.ML_MODEL_NAME, a.ML_REASON), "client",
    "Attribute values capped, truncated or replaced because of documented limits (size, NaN/inf, type).")
CLIENT_QUEUE_SIZE: Final = _metric(
    "ml.client.queue.size", "gauge", "{event}", (), "client",
    "Events waiting in the instrumentation's bounded queue at collection time.")

# --- realized quality (processor, from joined predictions and labels) ----------------------------------------------
PREDICTIONS: Final = _metric(
    "ml.predictions", "counter", "{prediction}", (*_SEG, a.ML_CLASS), "processor",
    "Prediction events accepted, by predicted class (classification; capped). The traffic and prediction mix.")
LABELS: Final = _metric(
    "ml.labels", "counter", "{label}", (a.ML_MODEL_NAME,), "processor",
    "Label events accepted (before joining).")
LABELED_PREDICTIONS: Final = _metric(
    "ml.labeled_predictions", "counter", "{prediction}", _SEG, "processor",
    "Predictions joined with their label: the denominator of realized quality.")
CORRECT_PREDICTIONS: Final = _metric(
    "ml.correct_predictions", "counter", "{prediction}", _SEG, "processor",
    "Joined predictions whose class equals the label (classification) or whose set equals it exactly (multilabel).")
EXPIRED_PREDICTIONS: Final = _metric(
    "ml.expired_predictions", "counter", "{prediction}", _SEG, "processor",
    "Predictions that got no label within the label window (TTL) or were evicted: never labeled.")
ORPHANED_LABELS: Final = _metric(
    "ml.orphaned_labels", "counter", "{label}", (a.ML_MODEL_NAME,), "processor",
    "Labels whose prediction never arrived within the label window.")
LABEL_DELAY: Final = _metric(
    "ml.label.delay", "histogram", "s", _MODEL, "processor",
    "Time from prediction to label, for joined predictions.", LABEL_DELAY_BUCKETS_S)
CLASSIFICATION_OUTCOMES: Final = _metric(
    "ml.classification.outcomes", "counter", "{prediction}", (*_SEG, a.ML_CLASS, a.ML_OUTCOME), "processor",
    "Per-class tp/fp/fn of joined predictions (multiclass, binary, and per label for multilabel). "
    "Precision = tp/(tp+fp), recall = tp/(tp+fn), F1 = 2tp/(2tp+fp+fn); micro by summing classes.")
CLASSIFICATION_ROC_AUC: Final = _metric(
    "ml.classification.roc_auc", "gauge", "1", _MODEL, "processor",
    "Binary ROC-AUC of the joined predictions of the current window (does not decompose: a gauge).")
MULTILABEL_PREDICTED_LABELS: Final = _metric(
    "ml.multilabel.predicted_labels", "histogram", "{label}", _SEG, "processor",
    "Labels predicted per sample (multilabel), recorded when the prediction is accepted (all traffic, labeled or "
    "not): _sum/_count is the average, buckets the distribution.",
    SET_SIZE_BUCKETS)
REGRESSION_ABSOLUTE_ERROR: Final = _metric(
    "ml.regression.absolute_error", "counter", "{error}", _SEG, "processor",
    "Sum of |y_pred - y_true| of joined predictions: MAE = increase(sum)/increase(labeled).")
REGRESSION_SQUARED_ERROR: Final = _metric(
    "ml.regression.squared_error", "counter", "{error}", _SEG, "processor",
    "Sum of (y_pred - y_true)^2: RMSE = sqrt(increase(sum)/increase(labeled)).")
REGRESSION_SIGNED_ERROR: Final = _metric(
    "ml.regression.signed_error", "updowncounter", "{error}", _SEG, "processor",
    "Sum of (y_pred - y_true): bias = delta(sum)/increase(labeled). Non-monotonic, so no _total in Prometheus.")
RANKING_RECIPROCAL_RANK: Final = _metric(
    "ml.ranking.reciprocal_rank", "counter", "1", _SEG, "processor",
    "Sum of reciprocal ranks of the first relevant item: MRR = increase(sum)/increase(labeled).")
RANKING_PRECISION_AT_K: Final = _metric(
    "ml.ranking.precision_at_k", "counter", "1", (*_SEG, a.ML_RANKING_K), "processor",
    "Sum of precision@k per joined ranking.")
RANKING_NDCG_AT_K: Final = _metric(
    "ml.ranking.ndcg_at_k", "counter", "1", (*_SEG, a.ML_RANKING_K), "processor",
    "Sum of NDCG@k per joined ranking.")

# --- estimated quality (processor, from the reference artifact; no labels needed) ----------------------------------
ESTIMATED_PREDICTIONS: Final = _metric(
    "ml.estimated.predictions", "counter", "{prediction}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Predictions that received a correctness estimate: the denominator of estimated quality.")
ESTIMATED_CORRECT_PREDICTIONS: Final = _metric(
    "ml.estimated.correct_predictions", "counter", "{prediction}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of estimated probabilities of being correct: estimated accuracy = increase(sum)/increase(estimated).")
ESTIMATED_CORRECT_VARIANCE: Final = _metric(
    "ml.estimated.correct_variance", "counter", "{prediction}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of p(1-p) of the correctness estimates: the sampling variance of the windowed sum (interval band).")
ESTIMATED_CLASSIFICATION_OUTCOMES: Final = _metric(
    "ml.estimated.classification.outcomes", "counter", "{prediction}",
    (*_SEG, a.ML_CLASS, a.ML_OUTCOME, a.ML_ESTIMATOR), "processor",
    "Expected per-class tp/fp/fn from calibrated class probabilities: estimated precision/recall/F1.")
ESTIMATED_REGRESSION_ABSOLUTE_ERROR: Final = _metric(
    "ml.estimated.regression.absolute_error", "counter", "{error}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of expected absolute errors (direct loss estimation).")
ESTIMATED_REGRESSION_SQUARED_ERROR: Final = _metric(
    "ml.estimated.regression.squared_error", "counter", "{error}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of expected squared errors (direct loss estimation).")
ESTIMATED_REGRESSION_ABSOLUTE_ERROR_VARIANCE: Final = _metric(
    "ml.estimated.regression.absolute_error_variance", "counter", "{error}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of per-prediction variances of the absolute error, max(E[e^2] - E[|e|]^2, 0): the estimated MAE's band is "
    "1.645*sqrt(increase(sum))/increase(ml_estimated_predictions_total) + error margin.")
ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS: Final = _metric(
    "ml.estimated.pessimistic_correct_predictions", "counter", "{prediction}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of pessimistic correctness: P(correct) on traffic the reference covers; 0 for a predicted class the "
    "reference never had; P(correct) x (1 - r) otherwise, r the estimated share of recent traffic (last 5000 "
    "predictions) from outside the reference's distribution. Pessimistic accuracy = increase(sum)/increase(estimated); "
    "equals the estimate on healthy traffic.")
ESTIMATED_OPTIMISTIC_CORRECT_PREDICTIONS: Final = _metric(
    "ml.estimated.optimistic_correct_predictions", "counter", "{prediction}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of optimistic correctness: the same with every unknown-correctness prediction counted right (1 for an "
    "unseen class, P(correct) + r (1 - P(correct)) otherwise): the upper end of the estimate's interval.")
ESTIMATED_UNKNOWN_PREDICTIONS: Final = _metric(
    "ml.estimated.unknown_predictions", "counter", "{prediction}", (*_SEG, a.ML_ESTIMATOR, a.ML_REASON), "processor",
    "Predictions of unknown correctness, by `ml.reason` (`unseen_class`: a class the reference never had; "
    "`out_of_support`: features farther from the reference than any of its own rows, ~1/(reference rows) of "
    "healthy traffic). Share = increase(this)/increase(ml.estimated.predictions).")
ESTIMATED_CORRECT_CALIBRATION_SD: Final = _metric(
    "ml.estimated.correct_calibration_sd", "counter", "{prediction}", (*_SEG, a.ML_ESTIMATOR), "processor",
    "Sum of the posterior standard deviations of the per-prediction correctness beyond the reference rows' average "
    "(how much less the reference knew about predictions like these; ~0 on typical traffic): the interval's "
    "half-width gains 1.645*increase(sum)/increase(estimated).")
ESTIMATED_CLASSIFICATION_ROC_AUC: Final = _metric(
    "ml.estimated.classification.roc_auc", "gauge", "1", _MODEL, "processor",
    "Estimated ROC-AUC of the most recent `metrics.auc_window` predictions with scores (binary: positive class; "
    "multiclass: one-vs-rest, macro over classes): does not decompose, a windowed gauge like the realized one.")
ESTIMATOR_ERROR_MARGIN: Final = _metric(
    "ml.estimator.error_margin", "gauge", "1", (*_MODEL, a.ML_METRIC), "processor",
    "Cross-validated estimation error of the estimator on the reference: widens the interval beyond sampling noise.")
REFERENCE_METRIC: Final = _metric(
    "ml.reference.metric", "gauge", "1", (*_MODEL, a.ML_METRIC, a.ML_RANKING_K), "processor",
    "Quality of the model on its evaluation set (baseline lines on dashboards, thresholds in alerts). "
    "`ml.ranking.k` only on ranking `precision_at_k` / `ndcg_at_k` points.")

REFERENCE_METRIC_SD: Final = _metric(
    "ml.reference.metric_sd", "gauge", "1", (*_MODEL, a.ML_METRIC, a.ML_RANKING_K), "processor",
    "Per-row standard deviation of a quality metric on the evaluation set (for macro F1: its bootstrap standard "
    "error times sqrt(rows)): a window of n rows has standard error metric_sd * sqrt(1/n + 1/rows). The "
    "significance of every quality alert.")
REFERENCE_ROWS: Final = _metric(
    "ml.reference.rows", "gauge", "{row}", _MODEL, "processor",
    "Rows of the evaluation set the reference was fitted on (the baselines' own sample size).")
REFERENCE_FEATURE_BIN_SHARE: Final = _metric(
    "ml.reference.feature.bin_share", "gauge", "1", (*_MODEL, a.ML_FEATURE_NAME, a.ML_BIN), "processor",
    "Share of the evaluation set in each reference bin of a feature, smoothed like the PSI (count + 0.5 per bin): "
    "with ml.feature.bin.observations, the feature's drift over any window.")
REFERENCE_PREDICTION_BIN_SHARE: Final = _metric(
    "ml.reference.prediction.bin_share", "gauge", "1", (*_MODEL, a.ML_BIN), "processor",
    "Share of the evaluation set's predictions in each reference bin (class, label or value bin), smoothed.")
REFERENCE_SET_SIZE_BIN_SHARE: Final = _metric(
    "ml.reference.set_size.bin_share", "gauge", "1", (*_MODEL, a.ML_BIN), "processor",
    "Share of the evaluation set's samples per predictions-per-sample bin (multilabel, ranking), smoothed.")
REFERENCE_WEAK_SEGMENT_SHARE: Final = _metric(
    "ml.reference.weak_segment.share", "gauge", "1", (*_MODEL, a.ML_WEAK_SEGMENT), "processor",
    "Share of the evaluation set in a weak slice: what ml.weak_segment.predictions / ml.predictions is when "
    "traffic looks like the evaluation set.")

# --- drift and novelty (processor, against the reference) ----------------------------------------------------------
UNSEEN_CLASS_PREDICTIONS: Final = _metric(
    "ml.unseen_class_predictions", "counter", "{prediction}", (*_MODEL, a.ML_CLASS), "processor",
    "Predictions (or predicted labels) of a class the evaluation set never had, by class (capped).")
FEATURE_BIN_OBSERVATIONS: Final = _metric(
    "ml.feature.bin.observations", "counter", "{observation}", (*_MODEL, a.ML_FEATURE_NAME, a.ML_BIN), "processor",
    "Observations per reference bin of a feature (additive: any window's distribution can be compared).")
FEATURE_MISSING: Final = _metric(
    "ml.feature.missing", "counter", "{prediction}", (*_MODEL, a.ML_FEATURE_NAME), "processor",
    "Predictions without a value for a feature of their reference (absent or null): the estimate treats it as missing "
    "and its interval widens. Share = increase(this)/increase(ml.estimated.predictions).")
PREDICTION_BIN_OBSERVATIONS: Final = _metric(
    "ml.prediction.bin.observations", "counter", "{observation}", (*_MODEL, a.ML_BIN), "processor",
    "Predictions per reference bin of the prediction distribution (class; multilabel: each predicted label; "
    "regression: value bin): the prediction mix over any window.")
SET_SIZE_BIN_OBSERVATIONS: Final = _metric(
    "ml.multilabel.set_size.bin.observations", "counter", "{observation}", (*_MODEL, a.ML_BIN), "processor",
    "Samples per reference bin of the predictions-per-sample distribution (multilabel, ranking).")
FEATURE_DRIFT: Final = _metric(
    "ml.feature.drift", "gauge", "1", (*_MODEL, a.ML_FEATURE_NAME, a.ML_DRIFT_METHOD), "processor",
    "Drift distance of a feature's recent window against its reference distribution.")
PREDICTION_DRIFT: Final = _metric(
    "ml.prediction.drift", "gauge", "1", (*_MODEL, a.ML_DRIFT_METHOD), "processor",
    "Drift distance of the recent prediction (class or value) distribution against the reference.")
SET_SIZE_DRIFT: Final = _metric(
    "ml.multilabel.set_size_drift", "gauge", "1", (*_MODEL, a.ML_DRIFT_METHOD), "processor",
    "Drift of the predictions-per-sample distribution (multilabel) against the reference.")
WEAK_SEGMENT_PREDICTIONS: Final = _metric(
    "ml.weak_segment.predictions", "counter", "{prediction}", (*_MODEL, a.ML_WEAK_SEGMENT), "processor",
    "Predictions falling in a weak slice of the evaluation set; share = increase(this)/increase(ml.predictions).")
RELABEL_SAMPLES: Final = _metric(
    "ml.relabel.samples", "counter", "{sample}", (a.ML_MODEL_NAME, a.ML_REASON), "processor",
    "Predictions written to the samples-to-relabel sink, by reason (low_confidence, unseen_class, drift).")

# --- processor self-telemetry --------------------------------------------------------------------------------------
PROCESSOR_RECORDS_RECEIVED: Final = _metric(
    "ml.processor.records.received", "counter", "{record}", (), "processor",
    "Log records received over OTLP (all of them, ML events or not).")
PROCESSOR_RECORDS_IGNORED: Final = _metric(
    "ml.processor.records.ignored", "counter", "{record}", (), "processor",
    "Log records that are not otel-ml events (ignored, not rejected).")
PROCESSOR_RECORDS_REJECTED: Final = _metric(
    "ml.processor.records.rejected", "counter", "{record}", (a.ML_REASON,), "processor",
    "Malformed otel-ml events rejected (reported to the sender in OTLP partial_success), by reason.")
PROCESSOR_REQUESTS_REFUSED: Final = _metric(
    "ml.processor.requests.refused", "counter", "{request}", (a.ML_REASON, a.ML_RECEIVER), "processor",
    "Export requests answered with a retryable code (gRPC UNAVAILABLE, HTTP 503 + Retry-After) so the sender keeps "
    "the data and retries, by reason (overloaded, memory_limit, shutting_down, store_unavailable, "
    "too_many_connections) and receiver.")
PROCESSOR_REQUESTS_FAILED: Final = _metric(
    "ml.processor.requests.failed", "counter", "{request}", (a.ML_REASON, a.ML_RECEIVER), "processor",
    "Requests answered with a permanent request-level error (bad framing, timeouts, wrong media type or path, "
    "internal errors), by reason and receiver; undecodable or oversized payloads count in records.rejected.")
PROCESSOR_AUTH_FAILURES: Final = _metric(
    "ml.processor.auth.failures", "counter", "{attempt}", (a.ML_REASON, a.ML_RECEIVER), "processor",
    "Requests refused for missing or invalid credentials (gRPC UNAUTHENTICATED, HTTP 401) and TLS handshakes that "
    "failed (HTTP and scrape endpoints), by reason and receiver.")
PROCESSOR_MEMORY_RSS: Final = _metric(
    "ml.processor.memory.rss", "gauge", "By", (), "processor",
    "Resident set size of the processor, as the memory limiter reads it.")
PROCESSOR_MEMORY_SOFT_LIMIT: Final = _metric(
    "ml.processor.memory.soft_limit", "gauge", "By", (), "processor",
    "Memory limiter soft limit: above it (RSS plus the memory reserved by requests in flight) new requests are "
    "refused with retryable codes before their bodies are read.")
PROCESSOR_MEMORY_HARD_LIMIT: Final = _metric(
    "ml.processor.memory.hard_limit", "gauge", "By", (), "processor",
    "Memory limiter hard limit: above it caches are shed; RSS is meant to stay below it.")
PROCESSOR_JOINS: Final = _metric(
    "ml.processor.joins", "counter", "{join}", (), "processor",
    "Prediction-label joins made (the join rate).")
PROCESSOR_STORE_PENDING: Final = _metric(
    "ml.processor.store.pending", "gauge", "{record}", (), "processor",
    "Predictions and labels waiting in the join store for their counterpart.")
PROCESSOR_STORE_OLDEST_PENDING_AGE: Final = _metric(
    "ml.processor.store.oldest_pending_age", "gauge", "s", (), "processor",
    "Age of the oldest prediction still waiting for its label.")
PROCESSOR_STORE_EVICTED: Final = _metric(
    "ml.processor.store.evicted", "counter", "{record}", (), "processor",
    "Pending records evicted because the store reached its size bound.")
PROCESSOR_STORE_ERRORS: Final = _metric(
    "ml.processor.store.errors", "counter", "{error}", (a.ML_REASON,), "processor",
    "Join store operations that failed (a step's transaction, an expiry sweep, a reconnection attempt), by kind "
    "(`ml.reason`: full, io, nomem, locked, readonly, corrupt, unavailable, other). Nothing of a failed step is "
    "acknowledged: its requests are answered with a retryable code and the store recovers by itself.")
PROCESSOR_STORE_QUARANTINED: Final = _metric(
    "ml.processor.store.quarantined", "counter", "{record}", (), "processor",
    "Stored records that could not be decoded (a corrupted row), moved to the store's quarantine table: each is a "
    "pending prediction or label lost (it will never join); the processor log names its key.")
PROCESSOR_EXPORT_FAILURES: Final = _metric(
    "ml.processor.export.failures", "counter", "{export}", (), "processor",
    "Failed metric exports from the processor to its OTLP endpoint.")
PROCESSOR_QUEUE_DEPTH: Final = _metric(
    "ml.processor.queue.depth", "gauge", "{request}", (), "processor",
    "Export requests being processed or waiting for the store.")
PROCESSOR_ATTRIBUTE_OVERFLOW: Final = _metric(
    "ml.processor.attribute.overflow", "counter", "{value}", (a.ML_MODEL_NAME, a.ML_ATTRIBUTE_KEY, a.ML_REASON),
    "processor",
    "Metric attribute values mapped to `_other`, by reason: `limit` (the per-model cap is full), `admission` (a new "
    "value not yet seen often enough while more than half the cap is taken), `series` (the metric reached "
    "`metrics.series_limit` points; `ml.attribute.key` is then the metric name).")
PROCESSOR_FEATURES_DROPPED: Final = _metric(
    "ml.processor.features.dropped", "counter", "{feature}", (a.ML_REASON,), "processor",
    "Features removed from accepted predictions because of `limits.*`: `too_long` (name or string value), "
    "`too_many` (beyond `limits.features_per_record`). The prediction itself is kept.")
PROCESSOR_SERIES_OVERFLOW: Final = _metric(
    "ml.processor.series.overflow", "gauge", "{series}", (), "processor",
    "Series of the processor's metrics folded by the OpenTelemetry SDK into an `otel.metric.overflow` point at the "
    "last collection (more points than the SDK's per-instrument limit, `metrics.series_limit` + 1). Should stay 0: "
    "the processor folds beyond `metrics.series_limit` itself.")
