"""A /metrics endpoint serving otel-ml series generated from the semconv specs, for what the real run lacks.

The integration tests feed Prometheus from the real otel-ml processor first; every semconv series the processor
does not produce in the test (client-side metrics of an instrumented app, estimation, drift, reference baselines)
and the host/process series of the collector's hostmetrics receiver and the app's system metrics are served here,
with values that grow in real time (counters) so ``rate``/``increase`` work. Two modes: ``healthy`` (quality at its
baseline, no drops, no errors, fast calls) and ``degraded`` (everything an alert watches goes wrong).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

from otel_ml import promql as q
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import AuthFailureReason, FailReason, QualityMetric, RefuseReason
from otel_ml.semconv.metrics import MetricSpec
from otel_ml.semconv.prometheus import label_name, prom_name
from tests.support.procs import free_port

Mode = Literal["healthy", "degraded"]
BASELINE = 0.875
"""Every quality baseline (exact in binary: healthy quality equals it exactly)."""

# Per-second rate (counters) or value (gauges) per metric and mode; attribute values below.
_DEFAULT_RATE = 16.0
"""Per-second rate of every counter not listed below (predictions, labeled, estimated, events...)."""
_RATE: dict[str, tuple[float, float]] = {
    m.CORRECT_PREDICTIONS.name: (14.0, 8.0),
    m.EXPIRED_PREDICTIONS.name: (0.4, 64.0),
    m.ESTIMATED_CORRECT_PREDICTIONS.name: (14.0, 8.0),
    m.ESTIMATED_CORRECT_VARIANCE.name: (1.6, 4.0),
    m.REGRESSION_ABSOLUTE_ERROR.name: (16.0, 32.0),
    m.REGRESSION_SQUARED_ERROR.name: (16.0, 64.0),
    m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR.name: (16.0, 32.0),
    m.ESTIMATED_REGRESSION_SQUARED_ERROR.name: (16.0, 64.0),
    m.RANKING_RECIPROCAL_RANK.name: (14.0, 8.0),
    m.RANKING_PRECISION_AT_K.name: (14.0, 8.0),
    m.RANKING_NDCG_AT_K.name: (14.0, 8.0),
    m.UNSEEN_CLASS_PREDICTIONS.name: (0.0, 1.0),
    m.ESTIMATED_UNKNOWN_PREDICTIONS.name: (0.0, 2.0),
    m.FEATURE_MISSING.name: (0.0, 2.0),
    m.WEAK_SEGMENT_PREDICTIONS.name: (2.0, 12.0),
    m.RELABEL_SAMPLES.name: (0.1, 1.0),
    m.FEATURE_DRIFT.name: (0.05, 0.5),
    m.PREDICTION_DRIFT.name: (0.05, 0.5),
    m.SET_SIZE_DRIFT.name: (0.05, 0.5),
    m.ESTIMATOR_ERROR_MARGIN.name: (0.02, 0.02),
    m.CLASSIFICATION_ROC_AUC.name: (BASELINE, 0.5),
    m.CLIENT_INFERENCE_ERRORS.name: (0.0, 1.0),
    m.CLIENT_EVENTS_EXPORTED.name: (32.0, 16.0),
    m.CLIENT_EVENTS_DROPPED.name: (0.0, 16.0),
    m.CLIENT_VALUES_TRUNCATED.name: (0.0, 0.5),
    m.CLIENT_QUEUE_SIZE.name: (3.0, 900.0),
    m.PROCESSOR_RECORDS_REJECTED.name: (0.0, 2.0),
    m.PROCESSOR_EXPORT_FAILURES.name: (0.0, 1.0),
    m.PROCESSOR_REQUESTS_REFUSED.name: (0.0, 1.0),
    m.PROCESSOR_REQUESTS_FAILED.name: (0.0, 1.0),
    m.PROCESSOR_AUTH_FAILURES.name: (0.0, 16.0),
    m.PROCESSOR_STORE_EVICTED.name: (0.0, 1.0),
    m.PROCESSOR_STORE_ERRORS.name: (0.0, 1.0),
    m.PROCESSOR_STORE_QUARANTINED.name: (0.0, 1.0),
    m.PROCESSOR_ATTRIBUTE_OVERFLOW.name: (0.0, 1.0),
    m.PROCESSOR_FEATURES_DROPPED.name: (0.0, 1.0),
    m.PROCESSOR_SERIES_OVERFLOW.name: (0.0, 3.0),
    m.REGRESSION_SIGNED_ERROR.name: (0.0, 0.0),
}
_OUTCOME_RATE = {"tp": (14.0, 4.0), "fp": (2.0, 8.0), "fn": (2.0, 8.0)}
_VALUES: dict[str, tuple[str, ...]] = {
    a.ML_SEGMENT: ("region=eu",), a.ML_CLASS: ("cat",), a.ML_OUTCOME: ("tp", "fp", "fn"), a.ML_RANKING_K: ("3",),
    a.ML_FEATURE_NAME: ("amount",), a.ML_DRIFT_METHOD: ("psi",), a.ML_BIN: ("0", "1"),
    a.ML_WEAK_SEGMENT: ("region=apac",), a.ML_ESTIMATOR: ("cbpe",), a.ML_REASON: ("queue_full",),
    a.ML_ATTRIBUTE_KEY: ("ml.class",), a.ERROR_TYPE: ("ValueError",), a.ML_RECEIVER: ("grpc",),
    a.ML_METRIC: tuple(v for k, v in vars(QualityMetric).items() if k.isupper() and isinstance(v, str)),
}
_METRIC_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    m.PROCESSOR_ATTRIBUTE_OVERFLOW.name: {a.ML_REASON: (a.OverflowReason.LIMIT,)},
    m.PROCESSOR_FEATURES_DROPPED.name: {a.ML_REASON: (a.FeatureDropReason.TOO_MANY,)},
    m.PROCESSOR_REQUESTS_REFUSED.name: {a.ML_REASON: (RefuseReason.MEMORY_LIMIT,)},
    m.PROCESSOR_REQUESTS_FAILED.name: {a.ML_REASON: (FailReason.INTERNAL_ERROR,)},
    m.PROCESSOR_AUTH_FAILURES.name: {a.ML_REASON: (AuthFailureReason.INVALID_CREDENTIALS,)},
}
"""Attribute values of one metric where the default of :data:`_VALUES` would not be one its alert watches."""
_REFERENCE = {QualityMetric.MAE: 1.0, QualityMetric.RMSE: 1.0, QualityMetric.LABELS_PER_SAMPLE: 1.0}


@dataclass(frozen=True)
class Sample:
    """One exposition line: series name, labels, value (a rate per second for counters)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    rate: float
    counter: bool


def _label_sets(spec: MetricSpec, model: str, version: str) -> list[dict[str, str]]:
    sets: list[dict[str, str]] = [{}]
    for key in spec.attributes:
        if key == a.ML_MODEL_NAME:
            values: tuple[str, ...] = (model,)
        elif key == a.ML_MODEL_VERSION:
            values = (version,)
        else:
            values = _METRIC_VALUES.get(spec.name, {}).get(key) or _VALUES[key]
        sets = [{**s, label_name(key): v} for s in sets for v in values]
    return sets


def _histogram(spec: MetricSpec, labels: dict[str, str], mode: Mode) -> list[Sample]:
    """Buckets of ``rate`` observations per second: healthy at the first bound, degraded half above 0.5."""
    rate = _DEFAULT_RATE
    bounds = [*spec.buckets, float("inf")]
    if spec is m.MULTILABEL_PREDICTED_LABELS:
        value = 1.0 if mode == "healthy" else 1.5
        total = rate * value
        cum = [rate if b >= value else 0.0 for b in bounds]
    elif mode == "healthy":
        total = rate * bounds[0]
        cum = [rate] * len(bounds)
    else:
        total = rate * 0.75
        cum = [rate / 2 if b < 1.0 else rate for b in bounds]
    base = prom_name(spec)
    out = [Sample(f"{base}_bucket", tuple(sorted({**labels, "le": _le(b)}.items())), c, True)
           for b, c in zip(bounds, cum, strict=True)]
    out.append(Sample(f"{base}_sum", tuple(sorted(labels.items())), total, True))
    out.append(Sample(f"{base}_count", tuple(sorted(labels.items())), rate, True))
    return out


def _le(bound: float) -> str:
    if bound == float("inf"):
        return "+Inf"
    text = repr(bound)
    return text[:-2] if text.endswith(".0") else text


_TASK_METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "regression": (m.REGRESSION_ABSOLUTE_ERROR, m.REGRESSION_SQUARED_ERROR, m.REGRESSION_SIGNED_ERROR,
                   m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR, m.ESTIMATED_REGRESSION_SQUARED_ERROR,
                   m.ESTIMATED_REGRESSION_ABSOLUTE_ERROR_VARIANCE),
    "ranking": (m.RANKING_RECIPROCAL_RANK, m.RANKING_PRECISION_AT_K, m.RANKING_NDCG_AT_K),
    "multilabel": (m.MULTILABEL_PREDICTED_LABELS, m.SET_SIZE_DRIFT),
    "classification": (m.CLASSIFICATION_OUTCOMES, m.ESTIMATED_CLASSIFICATION_OUTCOMES, m.CLASSIFICATION_ROC_AUC,
                       m.UNSEEN_CLASS_PREDICTIONS, m.ESTIMATED_CORRECT_PREDICTIONS, m.ESTIMATED_CORRECT_VARIANCE,
                       m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS, m.ESTIMATED_OPTIMISTIC_CORRECT_PREDICTIONS,
                       m.ESTIMATED_UNKNOWN_PREDICTIONS, m.ESTIMATED_CORRECT_CALIBRATION_SD,
                       m.ESTIMATED_CLASSIFICATION_ROC_AUC),
}
_FAMILY = {"binary": ("classification",), "multiclass": ("classification",),
           "multilabel": ("classification", "multilabel"), "regression": ("regression",), "ranking": ("ranking",)}


def _applies(spec: MetricSpec, task: str) -> bool:
    owners = [family for family, specs in _TASK_METRICS.items() if spec in specs]
    return not owners or any(f in _FAMILY[task] for f in owners)


def samples(metrics: Iterable[MetricSpec], models: Iterable[tuple[str, str, str]], mode: Mode) -> list[Sample]:
    """Series for ``metrics`` of every ``(model, version, task)`` where the metric applies to the task.

    Processor-wide metrics (no model attribute) are emitted once.
    """
    idx = 0 if mode == "healthy" else 1
    out: list[Sample] = []
    models = list(models)
    for spec in metrics:
        per_model = a.ML_MODEL_NAME in spec.attributes
        for model, version, task in (models if per_model else models[:1]):
            if per_model and not _applies(spec, task):
                continue
            for labels in _label_sets(spec, model, version):
                if spec.instrument == "histogram":
                    out += _histogram(spec, labels, mode)
                    continue
                if spec is m.REFERENCE_METRIC:
                    value = _REFERENCE.get(labels[label_name(a.ML_METRIC)], BASELINE)
                elif spec in (m.CLASSIFICATION_OUTCOMES, m.ESTIMATED_CLASSIFICATION_OUTCOMES):
                    value = _OUTCOME_RATE[labels[label_name(a.ML_OUTCOME)]][idx]
                else:
                    value = _RATE.get(spec.name, (_DEFAULT_RATE, _DEFAULT_RATE))[idx]
                out.append(Sample(prom_name(spec), tuple(sorted(labels.items())), value, spec.instrument == "counter"))
    return out


def host_samples(mode: Mode) -> list[Sample]:
    """hostmetrics ``system.*`` and OTel ``process.*`` series (CPU seconds per second, bytes)."""
    busy = 0.25 if mode == "healthy" else 0.875
    return [
        Sample(q.HOST_CPU_TIME, (("cpu", "0"), ("state", "idle")), 1 - busy, True),
        Sample(q.HOST_CPU_TIME, (("cpu", "0"), ("state", "user")), busy, True),
        Sample(q.HOST_MEMORY_USAGE, (("state", "used"),), 2.0**31, False),
        Sample(q.HOST_MEMORY_USAGE, (("state", "free"),), 2.0**32, False),
        Sample(q.PROCESS_CPU_TIME, (("state", "user"),), busy / 2, True),
        Sample(q.PROCESS_MEMORY_USAGE, (), 2.0**28, False),
    ]


class SyntheticExporter:
    """An HTTP ``/metrics`` endpoint on loopback; counters grow at their rate since :meth:`set_samples`."""

    def __init__(self) -> None:
        self.port = free_port()
        self._samples: list[Sample] = []
        self._t0 = time.time()
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SyntheticExporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_samples(self, new: list[Sample]) -> None:
        with self._lock:
            self._samples = list(new)
            self._t0 = time.time() - 1.0

    def samples(self) -> list[Sample]:
        """The samples being served."""
        with self._lock:
            return list(self._samples)

    def render(self) -> str:
        with self._lock:
            elapsed = time.time() - self._t0
            lines = []
            for s in self._samples:
                labels = ",".join(f'{k}="{v}"' for k, v in s.labels)
                value = s.rate * elapsed if s.counter else s.rate
                lines.append(f"{s.name}{{{labels}}} {value!r}" if labels else f"{s.name} {value!r}")
        return "\n".join(lines) + "\n"
