"""OTLP logs -> prediction and label rows: one pass over the records, validation, rejection reasons.

No business logic here: a record is either ignored (not an otel-ml event), rejected with a
:class:`~otel_ml.semconv.attributes.RejectReason`, or turned into a :mod:`~otel_ml.processor.records` row.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import ArrayValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_ml.errors import OtelMLError
from otel_ml.processor import _native
from otel_ml.processor.records import SEP, Row
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import RejectReason, Task
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT

_FEATURE: Final = a.ML_FEATURE_PREFIX
_SEGMENT: Final = a.ML_SEGMENT_PREFIX
_FEATURE_LEN: Final = len(_FEATURE)
_SEGMENT_LEN: Final = len(_SEGMENT)
_TASKS: Final = frozenset(Task.ALL)
_LIST_TASKS: Final = frozenset({Task.MULTILABEL, Task.RANKING})
_BINARY: Final = Task.BINARY
_DEFAULT_POSITIVE: Final = "1"
"""Positive class of a binary prediction without ``ml.prediction.classes``."""


class _Bad:
    """Marker of an attribute value of an unsupported OTLP type (kvlist, bytes, mixed arrays, empty)."""


BAD: Final = _Bad()


class Reject(OtelMLError):
    """A record is invalid; ``reason`` is a RejectReason value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


Extra = tuple[dict[str, Any], list[float] | None, tuple[str, ...] | None]
"""Per-prediction data that is not stored: ``(features, scores, classes)``."""


@dataclass(slots=True)
class Decoded:
    """Result of decoding one request.

    Attributes:
        received: Log records in the request.
        ignored: Records that are not otel-ml events.
        rejected: Rejected records by reason.
        first_error: Message of the first rejection (the OTLP ``partial_success.error_message``).
        predictions: Prediction rows (pairs have their label half set).
        extras: Aligned with ``predictions``: features, scores and classes (for stages).
        labels: Label rows.
    """

    received: int = 0
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    predictions: list[Row] = field(default_factory=list)
    extras: list[Extra | None] = field(default_factory=list)
    labels: list[Row] = field(default_factory=list)

    @property
    def rejected_count(self) -> int:
        """Total rejected records."""
        return sum(self.rejected.values())

    def reject(self, reason: str, message: str) -> None:
        """Count one rejection."""
        self.rejected[reason] += 1
        if not self.first_error:
            self.first_error = f"{reason}: {message}"


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "double_value":
        return v.double_value
    if kind == "int_value":
        return v.int_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "array_value":
        return _value_of_array(v.array_value)
    return BAD


def _arr(v: Any) -> Any:
    """A lazily kept ``ArrayValue`` as a list (or BAD); anything else unchanged."""
    return _value_of_array(v) if type(v) is ArrayValue else v


def _value_of_array(arr: ArrayValue) -> Any:
    strings = [x.string_value for x in arr.values]
    if strings and all(strings):  # non-empty strings: each is the active member of its oneof (the common case)
        return strings
    out: list[Any] = []
    append = out.append
    for x in arr.values:
        k = x.WhichOneof("value")
        if k == "string_value":
            append(x.string_value)
        elif k == "double_value":
            append(x.double_value)
        elif k == "int_value":
            append(x.int_value)
        elif k == "bool_value":
            append(x.bool_value)
        else:
            return BAD
    return out


def _opt_str(attrs: dict[str, Any], key: str) -> str | None:
    v = attrs.get(key)
    if v is not None and not isinstance(v, str):
        raise Reject(RejectReason.WRONG_TYPE, f"{key} must be a string")
    return v


def _req_str(attrs: dict[str, Any], key: str) -> str:
    v = _opt_str(attrs, key)
    if not v:
        raise Reject(RejectReason.MISSING_ATTRIBUTE, f"missing {key}")
    return v


def _num(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise Reject(RejectReason.WRONG_TYPE, f"{key} must be a number")
    f = float(v)
    if not math.isfinite(f):
        raise Reject(RejectReason.NOT_FINITE, f"{key} is not finite")
    return f


def _class(v: Any, key: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool | int):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise Reject(RejectReason.NOT_FINITE, f"{key} is not finite")
    raise Reject(RejectReason.WRONG_TYPE, f"{key} must be a class string")


def _str_list(v: Any, key: str) -> list[str]:
    v = _arr(v)
    if not isinstance(v, list):
        raise Reject(RejectReason.WRONG_TYPE, f"{key} must be a string array")
    for x in v:
        if type(x) is not str:
            raise Reject(RejectReason.WRONG_TYPE, f"{key} must be a string array")
    return v


def _num_list(v: Any, key: str) -> list[float]:
    v = _arr(v)
    if not isinstance(v, list):
        raise Reject(RejectReason.WRONG_TYPE, f"{key} must be a double array")
    for x in v:
        if type(x) is not float or not math.isfinite(x):
            return [_num(x, key) for x in v]  # slow path: ints, or raise the precise reason
    return v


def _label_half(attrs: dict[str, Any], ts: float) -> tuple[Any, ...]:
    """``(l_str, l_num, l_list, l_rel, l_ts)`` of a label (or pair)."""
    value = attrs.get(a.ML_LABEL_VALUE)
    if type(value) is str:  # the common case: a class
        return value, None, None, None, ts
    values = attrs.get(a.ML_LABEL_VALUES)
    l_str = l_num = l_list = l_rel = None
    if value is not None:
        if value is BAD or type(value) is ArrayValue:
            raise Reject(RejectReason.WRONG_TYPE, f"{a.ML_LABEL_VALUE} must be a string or a number")
        if isinstance(value, float):
            if not math.isfinite(value):
                raise Reject(RejectReason.NOT_FINITE, f"{a.ML_LABEL_VALUE} is not finite")
            l_num = value
        elif isinstance(value, bool):
            l_str = str(value)
        elif isinstance(value, int):
            l_str, l_num = str(value), float(value)
        else:
            l_str = value
    elif values is not None:
        items = _str_list(values, a.ML_LABEL_VALUES)
        l_list = json.dumps(items)
        rel = attrs.get(a.ML_LABEL_RELEVANCE)
        if rel is not None:
            grades = _num_list(rel, a.ML_LABEL_RELEVANCE)
            if len(grades) != len(items):
                raise Reject(RejectReason.WRONG_TYPE, f"{a.ML_LABEL_RELEVANCE} must align with {a.ML_LABEL_VALUES}")
            l_rel = json.dumps(grades)
    else:
        raise Reject(RejectReason.MISSING_ATTRIBUTE, f"missing {a.ML_LABEL_VALUE} or {a.ML_LABEL_VALUES}")
    return l_str, l_num, l_list, l_rel, ts


_NO_LABEL: Final = (None, None, None, None, None)
_SEGMENTS: dict[tuple[tuple[str, Any], ...], str] = {}
"""Segment strings by their attributes (a few distinct combinations repeat on every record)."""
_CLASSES: dict[tuple[str, ...], tuple[str, ...]] = {}
"""Interned class tuples (one object per distinct class order: cheap grouping downstream)."""


def _segment_string(seg_key: tuple[tuple[str, Any], ...]) -> str:
    """``dim=value,...`` (sorted by dimension) of a record's ``ml.segment.*`` attributes, in wire order."""
    cached = _SEGMENTS.get(seg_key)
    if cached is None:
        for key, v in seg_key:
            if type(v) is not str:
                raise Reject(RejectReason.WRONG_TYPE, f"{key} must be a string")
        cached = ",".join(f"{key[_SEGMENT_LEN:]}={v}" for key, v in sorted(seg_key))
        if len(_SEGMENTS) < 100_000:
            _SEGMENTS[seg_key] = cached
    return cached


def _prediction(attrs: dict[str, Any], segments: dict[str, Any] | None, features: dict[str, Any] | None, ts: float,
                now: float, extras: bool) -> tuple[Row, Extra | None]:
    get = attrs.get
    model, pid, task = get(a.ML_MODEL_NAME), get(a.ML_PREDICTION_ID), get(a.ML_TASK)
    if type(model) is not str or type(pid) is not str or not model or not pid:  # slow path: the precise reason
        model, pid = _req_str(attrs, a.ML_MODEL_NAME), _req_str(attrs, a.ML_PREDICTION_ID)
    if task not in _TASKS:
        _req_str(attrs, a.ML_TASK)
        raise Reject(RejectReason.UNKNOWN_TASK, f"unknown {a.ML_TASK} {task!r}")
    version = get(a.ML_MODEL_VERSION, "")
    if type(version) is not str:
        raise Reject(RejectReason.WRONG_TYPE, f"{a.ML_MODEL_VERSION} must be a string")
    p_str = p_num = p_aux = p_list = None
    if task in _LIST_TASKS:
        raw = get(a.ML_PREDICTION_VALUES)
        if raw is None:
            raise Reject(RejectReason.MISSING_ATTRIBUTE, f"missing {a.ML_PREDICTION_VALUES}")
        p_list = json.dumps(_str_list(raw, a.ML_PREDICTION_VALUES))
    else:
        raw = get(a.ML_PREDICTION_VALUE)
        if raw is None:
            raise Reject(RejectReason.MISSING_ATTRIBUTE, f"missing {a.ML_PREDICTION_VALUE}")
        if task == Task.REGRESSION:
            p_num = _num(raw, a.ML_PREDICTION_VALUE)
        elif type(raw) is str:
            p_str = raw
        else:
            p_str = _class(raw, a.ML_PREDICTION_VALUE)
    score = get(a.ML_PREDICTION_SCORE)
    if score is not None and (type(score) is not float or not math.isfinite(score)):
        score = _num(score, a.ML_PREDICTION_SCORE)
    # per-class scores and classes feed stages only (binary needs its positive class): without a stage they are not
    # decoded, so a malformed ml.prediction.scores is rejected only where something would read it
    scores = get(a.ML_PREDICTION_SCORES) if extras else None
    classes = get(a.ML_PREDICTION_CLASSES) if extras or task == _BINARY else None
    classes_t: tuple[str, ...] | None = None
    if classes is not None:
        classes_t = tuple(_str_list(classes, a.ML_PREDICTION_CLASSES))
        classes_t = _CLASSES.setdefault(classes_t, classes_t) if len(_CLASSES) < 10_000 else classes_t
    if scores is not None:
        scores = _num_list(scores, a.ML_PREDICTION_SCORES)
        if classes_t is not None and len(classes_t) != len(scores):
            raise Reject(RejectReason.WRONG_TYPE,
                         f"{a.ML_PREDICTION_SCORES} must align with {a.ML_PREDICTION_CLASSES}")
    if task == _BINARY:
        p_aux = classes_t[-1] if classes_t else _DEFAULT_POSITIVE
    segment = _segment_string(tuple(segments.items())) if segments else ""
    label = _label_half(attrs, ts) if (a.ML_LABEL_VALUE in attrs or a.ML_LABEL_VALUES in attrs) else _NO_LABEL
    row = (f"{model}{SEP}{pid}", now, model, version, task, segment, p_str, p_num, score, p_aux, p_list, ts, *label)
    if not extras:
        return row, None
    return row, (features or {}, scores, classes_t)


def _label(attrs: dict[str, Any], ts: float, now: float) -> Row:
    model, pid = attrs.get(a.ML_MODEL_NAME), attrs.get(a.ML_PREDICTION_ID)
    if type(model) is not str or type(pid) is not str or not model or not pid:
        model, pid = _req_str(attrs, a.ML_MODEL_NAME), _req_str(attrs, a.ML_PREDICTION_ID)
    return (f"{model}{SEP}{pid}", now, model, None, None, None, None, None, None, None, None, None,
            *_label_half(attrs, ts))


_PLAIN_KEY: Final = "plain"
_SEGMENT_KEY: Final = "segment"
_FEATURE_KEY: Final = "feature"
_STAGE_KEY: Final = "stage"
_KEY_KINDS: dict[str, str] = {}
"""Attribute key -> kind: plain, segment, feature, or stage (a plain key only stages read: skipped without one).
One dict lookup per attribute instead of prefix tests."""


def _key_kind(key: str) -> str:
    kind = (_SEGMENT_KEY if key.startswith(_SEGMENT) else _FEATURE_KEY if key.startswith(_FEATURE)
            else _STAGE_KEY if key == a.ML_PREDICTION_SCORES else _PLAIN_KEY)
    if len(_KEY_KINDS) < 100_000:
        _KEY_KINDS[key] = kind
    return kind


def _record(rec: LogRecord, name: str, out: Decoded, now: float, extras: bool) -> None:
    """Decode one ``ml.prediction`` / ``ml.label`` record into ``out`` (a row, or a counted rejection)."""
    key_kind = _KEY_KINDS.get
    attrs: dict[str, Any] = {}
    segments: dict[str, Any] | None = None
    features: dict[str, Any] | None = None
    for kv in rec.attributes:
        key = kv.key
        kind = key_kind(key)
        if kind is None:
            kind = _key_kind(key)
        if kind is not _PLAIN_KEY and kind is not _SEGMENT_KEY and not extras:
            continue  # features and per-class scores feed stages only: not even read without one
        v = kv.value
        val: Any = v.string_value
        if not val:  # a non-empty string is the oneof's active member; anything else: look
            which = v.WhichOneof("value")
            if which == "double_value":
                val = v.double_value
            elif which == "array_value":
                val = v.array_value  # converted only where used (_arr)
            elif which != "string_value":
                val = _value(v)
        if kind is _PLAIN_KEY or kind is _STAGE_KEY:
            attrs[key] = val
        elif kind is _SEGMENT_KEY:
            if segments is None:
                segments = {}
            segments[key] = val
        else:
            if features is None:
                features = {}
            features[key[_FEATURE_LEN:]] = None if val is BAD or type(val) is ArrayValue else val
    t = rec.time_unix_nano or rec.observed_time_unix_nano
    ts = t / 1e9 if t else now
    try:
        if name == ML_PREDICTION_EVENT:
            row, extra = _prediction(attrs, segments, features, ts, now, extras)
            out.predictions.append(row)
            out.extras.append(extra)
        else:
            out.labels.append(_label(attrs, ts, now))
    except Reject as exc:
        out.reject(exc.reason, str(exc))


def decode_request(request: ExportLogsServiceRequest, now: float, extras: bool = True) -> Decoded:
    """Decode every record of a parsed ``request`` (the Python path).

    Args:
        request: The OTLP request.
        now: The processor clock (arrival time and fallback timestamp).
        extras: Collect features, scores and classes for stages (skipped when no stage is configured).
    """
    out = Decoded()
    received = ignored = 0
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for rec in sl.log_records:
                received += 1
                name = rec.event_name
                if name != ML_PREDICTION_EVENT and name != ML_LABEL_EVENT:
                    ignored += 1
                    continue
                _record(rec, name, out, now, extras)
    out.received, out.ignored = received, ignored
    return out


def decode_body(body: bytes, now: float, extras: bool = True) -> Decoded:
    """Decode a serialized ``ExportLogsServiceRequest``: the C fast path when it is built, else the Python path.

    Both give the same :class:`Decoded` (``tests/processor/test_fastdecode.py``): the C code decodes the records of
    the common shapes itself, hands every other ``ml.*`` record to :func:`_record` as its own bytes, and leaves a
    request it does not fully understand (malformed, exotic encodings) to the Python path as a whole.

    Raises:
        google.protobuf.message.DecodeError: ``body`` is not a valid ``ExportLogsServiceRequest``.
    """
    if _native.decoder is not None:
        out = Decoded()

        def fallback(record: bytes) -> None:
            rec = LogRecord.FromString(record)
            _record(rec, rec.event_name, out, now, extras)

        counts = _native.decoder.decode(body, now, extras, out.predictions, out.extras, out.labels, fallback)
        if counts is not None:
            out.received, out.ignored = counts
            return out
    return decode_request(ExportLogsServiceRequest.FromString(body), now, extras)


_native.configure({
    "prediction_event": ML_PREDICTION_EVENT, "label_event": ML_LABEL_EVENT,
    "model": a.ML_MODEL_NAME, "version": a.ML_MODEL_VERSION, "task": a.ML_TASK, "id": a.ML_PREDICTION_ID,
    "pred_value": a.ML_PREDICTION_VALUE, "pred_values": a.ML_PREDICTION_VALUES, "score": a.ML_PREDICTION_SCORE,
    "scores": a.ML_PREDICTION_SCORES, "classes": a.ML_PREDICTION_CLASSES, "label_value": a.ML_LABEL_VALUE,
    "label_values": a.ML_LABEL_VALUES, "label_relevance": a.ML_LABEL_RELEVANCE,
    "segment_prefix": _SEGMENT, "feature_prefix": _FEATURE, "namespace": a.ML_NAMESPACE,
    "binary": Task.BINARY, "multiclass": Task.MULTICLASS, "regression": Task.REGRESSION,
    "binary_default_positive": _DEFAULT_POSITIVE, "sep": SEP,
    "segment_cache": {}, "classes_cache": _CLASSES, "segment_of": _segment_string,
})
