"""The Python decoder: one record (:func:`_record`: limits, then values, an unexpected error rejects the record
alone as ``internal_error``) and a parsed request (:func:`decode_request`). The C decoder hands it the records
and requests it does not decode itself.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_ml.processor.config import LimitsConfig
from otel_ml.processor.decode.limits import (
    _FEATURE_KEY,
    _IGNORE,
    _KEY_KINDS,
    _SEGMENT_KEY,
    _STAGE,
    DEFAULT_LIMITS,
    _attribute_value,
    _key_kind,
    _plan,
)
from otel_ml.processor.decode.result import (
    LIMIT_DIMENSION,
    LIMIT_SEGMENTS,
    LIMIT_VALUE,
    Decoded,
    Reject,
    _over,
    limit_message,
    shown,
    utf8_len,
)
from otel_ml.processor.decode.rows import _FEATURE_LEN, _SEGMENT_LEN, BAD, _label, _prediction, _value
from otel_ml.semconv.attributes import FeatureDropReason, RejectReason
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT

_logger = logging.getLogger(__name__)


_internal_errors = [0, 0.0]
"""Internal errors seen, time of the last one logged (at most one traceback per minute)."""


def _record(rec: LogRecord, name: str, out: Decoded, now: float, extras: bool,
            limits: LimitsConfig = DEFAULT_LIMITS) -> None:
    """Decode one ``ml.prediction`` / ``ml.label`` record into ``out`` (a row, or a counted rejection)."""
    try:
        key_kind = _KEY_KINDS.get
        table, fast, segment_key_fast, segment_key_max, feature_key_fast, feature_key_max, max_segments, \
            max_features = _plan(limits)
        attrs: dict[str, Any] = {}
        segments: dict[str, Any] | None = None
        features: dict[str, Any] | None = None
        n_segments = n_features = 0
        dropped: list[str] | None = None
        for kv in rec.attributes:
            key = kv.key
            kind = key_kind(key) or _key_kind(key)
            if kind is _SEGMENT_KEY:
                n_segments += 1
                if n_segments > max_segments:
                    raise Reject(RejectReason.TOO_MANY, limit_message(LIMIT_SEGMENTS, "", n_segments, max_segments))
                if len(key) > segment_key_fast and _over(key, segment_key_max):
                    raise Reject(RejectReason.TOO_LONG, limit_message(
                        LIMIT_DIMENSION, shown(key), utf8_len(key) - _SEGMENT_LEN, limits.segment_bytes))
                val = _attribute_value(kv.value, key, kind, fast, table, limits)
                if segments is None:
                    segments = {}
                segments[key] = val
                continue
            if kind is _FEATURE_KEY:
                if not extras:
                    continue  # features feed stages only: not even read without one
                if len(key) > feature_key_fast and _over(key, feature_key_max):
                    dropped = dropped or []
                    dropped.append(FeatureDropReason.TOO_LONG)
                    continue
                v = kv.value
                val = v.string_value
                if not val:
                    val = _value(v)
                elif len(val) > fast and _over(val, table[kind]):
                    dropped = dropped or []
                    dropped.append(FeatureDropReason.TOO_LONG)
                    continue
                if n_features >= max_features:  # counted among the features kept, in wire order
                    dropped = dropped or []
                    dropped.append(FeatureDropReason.TOO_MANY)
                    continue
                n_features += 1
                if features is None:
                    features = {}
                features[key[_FEATURE_LEN:]] = None if val is BAD or type(val) is list else val
                continue
            if kind is _IGNORE or (kind is _STAGE and not extras):
                continue  # per-class scores feed stages only
            v = kv.value
            val = v.string_value
            if val:  # a non-empty string is the oneof's active member (the common case: inlined)
                if len(val) > fast and _over(val, table[kind]):
                    raise Reject(RejectReason.TOO_LONG, limit_message(LIMIT_VALUE, shown(key), utf8_len(val),
                                                                      table[kind]))
            else:
                val = _attribute_value(v, key, kind, fast, table, limits)
            attrs[key] = val
        t = rec.time_unix_nano or rec.observed_time_unix_nano
        ts = t / 1e9 if t else now
        if name == ML_PREDICTION_EVENT:
            row, extra = _prediction(attrs, segments, features, ts, now, extras)
            out.predictions.append(row)
            out.extras.append(extra)
            if dropped:
                out.dropped.update(dropped)
        else:
            out.labels.append(_label(attrs, ts, now))
    except Reject as exc:
        out.reject(exc.reason, str(exc))
    except Exception:  # a bug: the record is rejected alone, the request goes on
        _internal_errors[0] += 1
        if time.monotonic() - _internal_errors[1] >= 60.0:
            _internal_errors[1] = time.monotonic()
            _logger.exception("could not decode an otel-ml record (%d so far); it is rejected as %s",
                              _internal_errors[0], RejectReason.INTERNAL_ERROR)
        out.reject(RejectReason.INTERNAL_ERROR, "the processor failed on this record (see its log)")


def decode_request(request: ExportLogsServiceRequest, now: float, extras: bool = True,
                   limits: LimitsConfig = DEFAULT_LIMITS, start: int = 0, count: int = -1) -> Decoded:
    """Decode every record of a parsed ``request`` (the Python path).

    Args:
        request: The OTLP request.
        now: The processor clock (arrival time and fallback timestamp).
        extras: Collect features, scores and classes for stages (skipped when no stage is configured).
        limits: Per-record limits (``limits:`` of the config).
        start: Index of the first record to decode (the ones before are skipped, uncounted).
        count: Records to decode from ``start`` (negative: to the end).
    """
    out = Decoded()
    received = ignored = 0
    stop = count + start if count >= 0 else -1
    index = -1
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            records = sl.log_records
            if index + len(records) < start:
                index += len(records)
                continue
            for rec in records:
                index += 1
                if index < start:
                    continue
                if index == stop:
                    out.received, out.ignored = received, ignored
                    return out
                received += 1
                name = rec.event_name
                if name != ML_PREDICTION_EVENT and name != ML_LABEL_EVENT:
                    ignored += 1
                    continue
                _record(rec, name, out, now, extras, limits)
    out.received, out.ignored = received, ignored
    return out
