"""Where the background worker puts finished events and metrics.

* :class:`OtlpSink` (the fast path): hand-encodes OTLP log records (:mod:`~otel_ml.instrumentation.wire`) with
  per-model constant bytes, aggregates the client metrics itself and sends both through a transport.
* :class:`SdkSink`: emits each event with ``Logger.emit(event_name=..., attributes=...)`` on the application's
  LoggerProvider and records metrics on its MeterProvider; the SDK's processors and readers export them.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

from opentelemetry.trace import SpanContext as _SpanContext
from opentelemetry.trace import get_current_span

from otel_ml.instrumentation import wire
from otel_ml.instrumentation.aggregate import Aggregator
from otel_ml.instrumentation.config import Settings
from otel_ml.instrumentation.errors import ConfigurationError
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.instrumentation.transport import LOGS, METRICS, Transport, send_with_retry
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import ML_MODEL_NAME, ML_PREDICTION_ID, ML_REASON, DropReason
from otel_ml.semconv.events import (
    EVENT_SCHEMA_VERSION,
    INSTRUMENTATION_SCOPE,
    ML_LABEL_EVENT,
    ML_PREDICTION_EVENT,
    SCHEMA_VERSION_ATTRIBUTE,
)

_logger = logging.getLogger(__name__)

Item = tuple[str, Any]
"""A finished event: ``(model name, payload)``."""

_pack_q = wire._pack_q
_first = itemgetter(0)
_second = itemgetter(1)


def _scope_version() -> str:
    from otel_ml import __version__

    return __version__


class _Throttled:
    """Logs a warning at most once per ``interval`` seconds, with the number of occurrences suppressed meanwhile."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        _logger.warning("%s%s", msg % args,
                        f" ({self._suppressed} similar messages suppressed)" if self._suppressed else "")
        self._suppressed = 0
        self._next = now + self.interval


_pack_ids = struct.Struct(">2sQQ2sQ").pack
_FLAGS = [b"\x45" + wire._pack_i(f) for f in range(256)]
"""``LogRecord.flags`` (field 8, fixed32) for every W3C trace-flags byte."""


def span_fields(context: Any) -> bytes | None:
    """The encoded ``flags``, ``trace_id`` and ``span_id`` fields (8, 9, 10) linking an event to the span of
    ``context`` (an OpenTelemetry ``Context``), or ``None`` when it has no valid span."""
    if not context:  # None, or the empty Context outside any span: the common case, without a call
        return None
    ctx = get_current_span(context).get_span_context()
    if type(ctx) is _SpanContext and len(ctx) == 6:  # the API's tuple: fields read without the properties
        trace_id, span_id, _, flags, _, valid = ctx
    else:
        trace_id, span_id, flags, valid = ctx.trace_id, ctx.span_id, ctx.trace_flags, ctx.is_valid
    if not valid:
        return None
    return _FLAGS[flags & 0xFF] + _pack_ids(b"\x4a\x10", trace_id >> 64, trace_id & 0xFFFFFFFFFFFFFFFF, b"\x52\x08",
                                            span_id)


class OtlpSink:
    """Encodes events to OTLP bytes and exports them (and the aggregated metrics) through a transport."""

    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self.metrics = Aggregator()
        self._enc = wire.AttributeEncoder()
        self.feature_encoder = wire.FeatureEncoder(self._enc)
        """Encodes validated feature attributes (used by the normalizer directly)."""
        self._warn_failed = _Throttled()
        self._warn_rejected = _Throttled()
        self._pred_name = wire.event_name_field(ML_PREDICTION_EVENT)
        self._label_name = wire.event_name_field(ML_LABEL_EVENT)
        self._consts: tuple[dict[ModelSpec, bytes], dict[ModelSpec, bytes]] = ({}, {})
        self._id_heads: dict[int, bytes] = {}
        self._metrics_warned = False
        self._last_context: Any = None
        self._last_link: bytes | None = None
        """The span link of the last event's context (a request's events share one context object)."""
        self.set_resource(settings.resource)
        self._scope = wire.scope_header(INSTRUMENTATION_SCOPE, _scope_version(),
                                        {SCHEMA_VERSION_ATTRIBUTE: EVENT_SCHEMA_VERSION})

    def set_resource(self, resource: dict[str, Any]) -> None:
        """Use new resource attributes (after a fork)."""
        self.settings.resource = resource
        self._resource = wire.resource_field(resource)

    def _constants(self, spec: ModelSpec, label: bool) -> bytes:
        cache = self._consts[label]
        data = cache.get(spec)
        if data is None:
            enc = self._enc
            pairs = spec.label_constants if label else spec.prediction_constants
            data = cache[spec] = b"".join(enc.value(k, v) for k, v in pairs)
        return data

    def event(
        self, spec: ModelSpec, label: bool, time_ns: int, pid: str, pairs: Sequence[tuple[str, Any]], context: Any,
        encoded: Sequence[bytes] = (),
    ) -> Item:
        """Encode one event (``encoded``: attribute entries already encoded with :attr:`feature_encoder`)."""
        const = self._consts[label].get(spec)
        if const is None:
            const = self._constants(spec, label)
        raw = pid.encode("utf-8", "replace")
        head = self._id_heads.get(len(raw))
        if head is None:
            head = self._id_head(len(raw))
        t = _pack_q(time_ns)
        parts = [b"\x09", t, b"\x59", t, const, head, raw]  # LogRecord fields 1, 11, then the attributes (6)
        self._enc.encode_pairs(pairs, parts)
        if encoded:
            parts += encoded
        if context:
            if context is not self._last_context:
                self._last_context, self._last_link = context, span_fields(context)
            if self._last_link is not None:
                parts.append(self._last_link)
        parts.append(self._label_name if label else self._pred_name)
        return spec.name, b"".join(parts)

    def _id_head(self, length: int) -> bytes:
        """The ``ml.prediction.id`` attribute entry up to the id's bytes, for an id of ``length`` bytes (cached)."""
        head = self._enc.string(ML_PREDICTION_ID, "x" * length)[:-length]
        if len(self._id_heads) < 4096:
            self._id_heads[length] = head
        return head

    def send(self, items: list[Item], stop: threading.Event, deadline: float | None) -> None:
        """Export one batch; count exported or dropped events per model."""
        self.metrics.fold_scores()
        body = wire.logs_request(self._resource, self._scope, list(map(_second, items)))
        s = self.settings
        outcome = send_with_retry(self.transport, LOGS, body, s.timeout_s, s.max_retry_s, stop, deadline)
        counts = Counter(map(_first, items))
        if outcome.ok:
            for name, n in counts.items():
                self.metrics.exported[name] += n
            if outcome.rejected:
                self._warn_rejected.warning("otel-ml: the endpoint rejected %d of %d events", outcome.rejected,
                                            len(items))
        else:
            self._warn_failed.warning("otel-ml: dropping %d events after failed export (%s)", len(items),
                                      outcome.detail)
            for name, n in counts.items():
                self.metrics.record_drop(name, DropReason.EXPORT_FAILED, n)

    def export_metrics(self, queue_size: int, stop: threading.Event, deadline: float | None) -> None:
        """Export the cumulative client metrics."""
        body = self.metrics.export_request(self.settings.resource, _scope_version(), queue_size)
        s = self.settings
        outcome = send_with_retry(self.transport, METRICS, body, s.timeout_s,
                                  min(s.max_retry_s, s.metric_interval_s), stop, deadline)
        if outcome.ok:
            return
        if self._metrics_warned:
            _logger.debug("otel-ml: metrics export failed (%s)", outcome.detail)
            return
        self._metrics_warned = True  # loudly once; the events are not affected
        detail = outcome.detail
        if "UNIMPLEMENTED" in detail or detail in ("HTTP 404", "HTTP 405"):
            why = ("the endpoint does not accept OTLP metrics (is it the otel-ml processor? it takes logs only): "
                   "send the metrics to a collector with OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        else:
            why = "check that the endpoint is up and accepts OTLP metrics (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT)"
        _logger.warning("otel-ml: exporting the ml.client.* metrics to %s failed (%s); %s, or turn the client "
                        "metrics off with OTEL_METRICS_EXPORTER=none or otel_ml.configure(client_metrics=False). "
                        "Events are not affected; later failures are logged at DEBUG.",
                        s.metrics_endpoint, detail, why)

    def close(self) -> None:
        """Close the transport."""
        self.transport.close()


class SdkMetrics:
    """The :class:`Aggregator` interface backed by the application's MeterProvider instruments."""

    def __init__(self, meter_provider: Any, queue_len: Any) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        meter = meter_provider.get_meter(INSTRUMENTATION_SCOPE, _scope_version(),
                                         attributes={SCHEMA_VERSION_ATTRIBUTE: EVENT_SCHEMA_VERSION})

        def hist(spec: m.MetricSpec) -> Any:
            return meter.create_histogram(spec.name, unit=spec.unit, description=spec.doc,
                                          explicit_bucket_boundaries_advisory=list(spec.buckets))

        def counter(spec: m.MetricSpec) -> Any:
            return meter.create_counter(spec.name, unit=spec.unit, description=spec.doc)

        def observe(options: CallbackOptions) -> list[Observation]:
            return [Observation(queue_len())]

        self._duration = hist(m.CLIENT_INFERENCE_DURATION)
        self._score = hist(m.CLIENT_PREDICTION_SCORE)
        self._predictions = counter(m.CLIENT_PREDICTIONS)
        self._errors = counter(m.CLIENT_INFERENCE_ERRORS)
        self._dropped = counter(m.CLIENT_EVENTS_DROPPED)
        self._truncated = counter(m.CLIENT_VALUES_TRUNCATED)
        meter.create_observable_gauge(m.CLIENT_QUEUE_SIZE.name, callbacks=[observe], unit=m.CLIENT_QUEUE_SIZE.unit,
                                      description=m.CLIENT_QUEUE_SIZE.doc)
        self._agg = Aggregator()  # class capping only

    @staticmethod
    def _attrs(model: tuple[str, str], extra: tuple[str, Any] | None = None) -> dict[str, Any]:
        from otel_ml.semconv.attributes import ML_MODEL_VERSION

        attrs: dict[str, Any] = {ML_MODEL_NAME: model[0], ML_MODEL_VERSION: model[1]}
        if extra is not None and extra[1] is not None:
            attrs[extra[0]] = extra[1]
        return attrs

    def record_duration(self, model: tuple[str, str], seconds: float, error_type: str | None = None) -> None:
        """See :meth:`Aggregator.record_duration`."""
        from otel_ml.semconv.attributes import ERROR_TYPE

        self._duration.record(seconds, self._attrs(model, (ERROR_TYPE, error_type)))

    def record_prediction(self, model: tuple[str, str], cls: str | None, score: float | None) -> None:
        """See :meth:`Aggregator.record_prediction`."""
        from otel_ml.semconv.attributes import ML_CLASS

        if cls is not None:
            before = sum(self._agg.truncated.values())
            self._agg.record_prediction(model, cls, None)
            if sum(self._agg.truncated.values()) != before:
                cls = "_other"
        self._predictions.add(1, self._attrs(model, (ML_CLASS, cls)))
        if score is not None:
            self._score.record(score, self._attrs(model))

    def record_error(self, model: tuple[str, str], error_type: str) -> None:
        """See :meth:`Aggregator.record_error`."""
        from otel_ml.semconv.attributes import ERROR_TYPE

        self._errors.add(1, self._attrs(model, (ERROR_TYPE, error_type)))

    def record_drop(self, model_name: str, reason: str, n: int = 1) -> None:
        """See :meth:`Aggregator.record_drop`."""
        self._dropped.add(n, {ML_MODEL_NAME: model_name, ML_REASON: reason})

    def add_truncated(self, counts: dict[tuple[str, str], int]) -> None:
        """See :meth:`Aggregator.add_truncated`."""
        for (name, reason), n in counts.items():
            self._truncated.add(n, {ML_MODEL_NAME: name, ML_REASON: reason})
        counts.clear()


class SdkSink:
    """Emits events through an SDK LoggerProvider (log records with ``event_name``) and metrics through its meters.

    Raises:
        ConfigurationError: The installed OpenTelemetry API cannot emit events (it needs ``opentelemetry-api>=1.35``;
            the default ``otlp`` mode works with any supported version).
    """

    def __init__(self, settings: Settings, queue_len: Any) -> None:
        from opentelemetry import metrics

        from otel_ml.compat import event_emitter, logs_api

        self.settings = settings
        logs = logs_api()
        lp = settings.logger_provider or (logs.get_logger_provider() if logs is not None else None)
        emit = None
        if lp is not None:
            try:
                try:
                    logger = lp.get_logger(INSTRUMENTATION_SCOPE, _scope_version(),
                                           attributes={SCHEMA_VERSION_ATTRIBUTE: EVENT_SCHEMA_VERSION})
                except TypeError:  # an API without scope attributes
                    logger = lp.get_logger(INSTRUMENTATION_SCOPE, _scope_version())
                emit = event_emitter(logger)
            except AttributeError:  # not a LoggerProvider of the logs API (e.g. the SDK's LogEmitterProvider < 1.15)
                emit = None
        if emit is None:
            raise ConfigurationError(
                "mode='sdk' emits events as log records with an event_name, which this opentelemetry-api cannot do "
                "(it needs opentelemetry-api>=1.35); upgrade it, or use the default mode: "
                "otel_ml.configure(endpoint='http://collector:4318')")
        self._emit = emit
        self.metrics = SdkMetrics(settings.meter_provider or metrics.get_meter_provider(), queue_len)

    def set_resource(self, resource: dict[str, Any]) -> None:
        """The SDK providers own the resource."""

    def event(
        self, spec: ModelSpec, label: bool, time_ns: int, pid: str, pairs: Sequence[tuple[str, Any]], context: Any,
        encoded: Sequence[Any] = (),
    ) -> Item:
        """Emit one event now (the SDK's processor batches and exports it)."""
        attrs = dict(spec.label_constants if label else spec.prediction_constants)
        attrs[ML_PREDICTION_ID] = pid
        attrs.update(pairs)
        self._emit(ML_LABEL_EVENT if label else ML_PREDICTION_EVENT, attrs, time_ns, context or None)
        return spec.name, None

    def send(self, items: list[Item], stop: threading.Event, deadline: float | None) -> None:
        """Events were handed to the SDK already."""

    def export_metrics(self, queue_size: int, stop: threading.Event, deadline: float | None) -> None:
        """The SDK's metric reader exports."""

    def close(self) -> None:
        """The application owns its providers."""
