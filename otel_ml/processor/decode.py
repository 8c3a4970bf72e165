"""OTLP logs -> prediction and label rows: one pass over the records, validation, rejection reasons.

No business logic here: a record is either ignored (not an otel-ml event), rejected with a
:class:`~otel_ml.semconv.attributes.RejectReason`, or turned into a :mod:`~otel_ml.processor.records` row.

Validation of one record, in this order (the C fast path applies the same rules, see ``_fastdecode.c``):

1. *Limits* (:class:`~otel_ml.processor.config.LimitsConfig`), attribute by attribute in wire order, before any
   value is used: the first attribute beyond a length or count limit rejects the record (``too_long``,
   ``too_many``); a feature beyond its limits is dropped and counted (:attr:`Decoded.dropped`). Keys that are not
   otel-ml attributes are not read at all.
2. *Types and values* of the attributes the event needs (``missing_attribute``, ``wrong_type``, ``unknown_task``,
   ``not_finite``).
3. Anything else that goes wrong decoding one record (a bug) rejects that record alone as ``internal_error`` and is
   logged: no input fails the rest of its request.

Messages (the OTLP ``partial_success.error_message``) never echo more than a short prefix of any input value
(:func:`shown`), and :func:`error_message` bounds the whole message to :data:`MAX_ERROR_MESSAGE` bytes.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import ArrayValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_ml.errors import OtelMLError
from otel_ml.processor import _native
from otel_ml.processor.caches import ByteCache, approx_size
from otel_ml.processor.config import LimitsConfig
from otel_ml.processor.records import SEP, Row
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import FeatureDropReason, RejectReason, Task
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
_logger = logging.getLogger(__name__)

DEFAULT_LIMITS: Final = LimitsConfig()
TASK_BYTES: Final = 64
"""Longest ``ml.task`` value looked at (longer than any task: rejected ``too_long`` without being copied)."""
SHOWN_BYTES: Final = 64
"""At most this many bytes of an input (a key or a value) appear in a rejection message."""
MAX_MESSAGE: Final = 256
"""Longest message of one rejection."""
MAX_ERROR_MESSAGE: Final = 1024
"""Longest ``partial_success.error_message`` (:func:`error_message`)."""
PART_BYTES: Final = 1 << 20
"""A request larger than this is decoded in parts (:attr:`Decoded.parts`)."""
PART_RECORDS: Final = 8192
"""Records per part: a part's rows and the store's work on them take a few MB, whatever the request size (a
16 MiB request of small labels is ~190 000 records: ~45 MB of rows and as much again in the store's temporaries
when decoded and ingested at once)."""


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
        dropped: Features dropped from accepted predictions, by :class:`FeatureDropReason`.
        parts: For a large request (:data:`PART_BYTES`): the request decoded in parts of at most
            :data:`PART_RECORDS` records, produced on demand (then the row lists above are empty and ``received``,
            ``ignored`` count the whole request); each part is a :class:`Decoded` without parts. The processor
            ingests them one after the other in one transaction, so only one part's rows exist at a time.
    """

    received: int = 0
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    predictions: list[Row] = field(default_factory=list)
    extras: list[Extra | None] = field(default_factory=list)
    labels: list[Row] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    parts: Callable[[], Iterator[Decoded]] | None = None

    def materialized(self) -> Decoded:
        """This request with its parts concatenated (tests, tools: the memory bound is lost)."""
        if self.parts is None:
            return self
        out = Decoded(received=self.received, ignored=self.ignored)
        for part in self.parts():
            for reason, n in part.rejected.items():
                out.rejected[reason] += n
            out.first_error = out.first_error or part.first_error
            out.predictions += part.predictions
            out.extras += part.extras
            out.labels += part.labels
            out.dropped.update(part.dropped)
        return out

    @property
    def rejected_count(self) -> int:
        """Total rejected records."""
        return sum(self.rejected.values())

    def reject(self, reason: str, message: str) -> None:
        """Count one rejection (the message of the first one is kept, bounded to :data:`MAX_MESSAGE`)."""
        self.rejected[reason] += 1
        if not self.first_error:
            self.first_error = _clip(f"{reason}: {message}", MAX_MESSAGE)

    def reject_limit(self, code: int, key_prefix: bytes, key_bytes: int, n: int, limit: int) -> None:
        """Count a record beyond a limit (called by the C decoder too; ``code`` as in :func:`limit_message`)."""
        self.reject(RejectReason.TOO_MANY if code in _TOO_MANY_CODES else RejectReason.TOO_LONG,
                    limit_message(code, shown_bytes(key_prefix, key_bytes), n, limit))


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (on a character boundary), ``…`` marking a cut."""
    if len(text) <= limit // 4 or len(raw := text.encode()) <= limit:
        return text
    return raw[:limit - 3].decode("utf-8", "ignore") + "…"


def utf8_len(s: str) -> int:
    """Bytes of ``s`` in UTF-8 (O(1) for ASCII strings)."""
    return len(s) if s.isascii() else len(s.encode())


def _over(s: str, limit: int) -> bool:
    """Whether ``s`` is longer than ``limit`` bytes of UTF-8 (no encoding when the character count decides)."""
    n = len(s)
    return n > limit or (n > limit >> 2 and not s.isascii() and len(s.encode()) > limit)


def shown_bytes(prefix: bytes, total: int) -> str:
    """How a key or value appears in a message: its first :data:`SHOWN_BYTES` bytes, elided beyond."""
    if total <= SHOWN_BYTES:
        return prefix.decode("utf-8", "replace")
    return f"{prefix[:SHOWN_BYTES].decode('utf-8', 'ignore')}…({total} bytes)"


def shown(s: str) -> str:
    """:func:`shown_bytes` of a string (same result as the C decoder's, which passes the raw prefix)."""
    return shown_bytes(s[:SHOWN_BYTES].encode()[:SHOWN_BYTES], utf8_len(s))


LIMIT_VALUE, LIMIT_ITEMS, LIMIT_SEGMENTS, LIMIT_DIMENSION, LIMIT_ITEM = range(5)
"""Codes of :func:`limit_message` (also used by ``_fastdecode.c``; only LIMIT_ITEMS and LIMIT_SEGMENTS are
``too_many``, the others ``too_long``: see :meth:`Decoded.reject_limit`)."""
_TOO_MANY_CODES: Final = frozenset({LIMIT_ITEMS, LIMIT_SEGMENTS})


def limit_message(code: int, key: str, n: int, limit: int) -> str:
    """The rejection message of a record beyond a limit (``key`` already :func:`shown`)."""
    if code == LIMIT_VALUE:
        return f"{key} is {n} bytes (limit {limit})"
    if code == LIMIT_ITEMS:
        return f"{key} has {n} items (limit {limit})"
    if code == LIMIT_SEGMENTS:
        return f"more than {limit} {_SEGMENT}* attributes"
    if code == LIMIT_DIMENSION:
        return f"{key}: segment dimension of {n} bytes (limit {limit})"
    return f"{key} has an item of {n} bytes (limit {limit})"


def error_message(rejected: Counter[str], first_error: str) -> str:
    """``partial_success.error_message``: the first rejection, then the counts by reason; at most 1 KiB.

    Example: ``too_long: ml.prediction.id is 5000 bytes (limit 4096) [3 rejected: too_long 2, wrong_type 1]``.
    """
    if not rejected:
        return ""
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
    tail = _clip(f" [{sum(rejected.values())} rejected: {counts}]", MAX_ERROR_MESSAGE // 2)
    return _clip(first_error, MAX_ERROR_MESSAGE - len(tail.encode())) + tail


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


def _score_list(v: Any) -> list[float]:
    """``ml.prediction.scores``: doubles, NaN for a class or label the model did not score (a multilabel model that
    scores only the labels it predicts); an infinite score is rejected. The C decoder hands records with a NaN
    score to this path."""
    v = _arr(v)
    if not isinstance(v, list):
        raise Reject(RejectReason.WRONG_TYPE, f"{a.ML_PREDICTION_SCORES} must be a double array")
    if all(type(x) is float and not math.isinf(x) for x in v):
        return v
    return [x if type(x) is float and math.isnan(x) else _num(x, a.ML_PREDICTION_SCORES) for x in v]


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
_SEGMENTS: ByteCache[tuple[tuple[str, Any], ...], str] = ByteCache("decode.segments", 8 << 20)
"""Segment strings by their attributes (a few distinct combinations repeat on every record)."""
_C_SEGMENTS: ByteCache[bytes, str] = ByteCache("decode.segments.c", 8 << 20)
"""The C decoder's segment strings, by the raw bytes of the segment attributes (it looks up, Python inserts)."""
_CLASSES: ByteCache[tuple[str, ...], tuple[str, ...]] = ByteCache("decode.classes", 4 << 20)
"""Interned class tuples (one object per distinct class order: cheap grouping downstream)."""


def _segment_string(seg_key: tuple[tuple[str, Any], ...]) -> str:
    """``dim=value,...`` (sorted by dimension) of a record's ``ml.segment.*`` attributes, in wire order."""
    try:
        cached = _SEGMENTS.get(seg_key)
    except TypeError:  # an unhashable value (an ArrayValue): the type check below rejects it
        cached = None
    if cached is None:
        for key, v in seg_key:
            if type(v) is not str:
                raise Reject(RejectReason.WRONG_TYPE, f"{shown(key)} must be a string")
        cached = _SEGMENTS.put(seg_key, ",".join(f"{key[_SEGMENT_LEN:]}={v}" for key, v in sorted(seg_key)))
    return cached


def _c_segment(raw: bytes, pairs: tuple[tuple[str, str], ...]) -> str:
    """The C decoder's cache miss: the segment string of ``pairs``, cached under ``raw``."""
    return _C_SEGMENTS.put(raw, _segment_string(pairs))


def _intern_classes(classes: tuple[str, ...]) -> tuple[str, ...]:
    """The shared tuple equal to ``classes`` (cached while the cache has room)."""
    return _CLASSES.get(classes) or _CLASSES.put(classes, classes)


def _prediction(attrs: dict[str, Any], segments: dict[str, Any] | None, features: dict[str, Any] | None, ts: float,
                now: float, extras: bool) -> tuple[Row, Extra | None]:
    get = attrs.get
    model, pid, task = get(a.ML_MODEL_NAME), get(a.ML_PREDICTION_ID), get(a.ML_TASK)
    if type(model) is not str or type(pid) is not str or not model or not pid:  # slow path: the precise reason
        model, pid = _req_str(attrs, a.ML_MODEL_NAME), _req_str(attrs, a.ML_PREDICTION_ID)
    if type(task) is not str or task not in _TASKS:
        _req_str(attrs, a.ML_TASK)
        raise Reject(RejectReason.UNKNOWN_TASK, f"unknown {a.ML_TASK} {shown(str(task))!r}")
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
        classes_t = _intern_classes(tuple(_str_list(classes, a.ML_PREDICTION_CLASSES)))
    if scores is not None:
        scores = _score_list(scores)
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


# --- attribute kinds: what a key is, and which limit its value has (one dict lookup per attribute) ----------------
_IGNORE: Final = "ignore"
"""Not an otel-ml attribute (or one this version does not know): never read."""
_PLAIN: Final = "plain"
"""A known attribute without a length limit (``ml.prediction.score``)."""
_ID: Final = "id"
_MODEL: Final = "model"
_TASK: Final = "task"
_CLASS: Final = "class"
_LIST: Final = "list"
_STAGE: Final = "stage"
"""A list only stages read (``ml.prediction.scores``): skipped without one."""
_SEGMENT_KEY: Final = "segment"
_FEATURE_KEY: Final = "feature"
_KINDS: Final = {a.ML_PREDICTION_ID: _ID, a.ML_MODEL_NAME: _MODEL, a.ML_MODEL_VERSION: _MODEL, a.ML_TASK: _TASK,
                 a.ML_PREDICTION_VALUE: _CLASS, a.ML_LABEL_VALUE: _CLASS, a.ML_PREDICTION_VALUES: _LIST,
                 a.ML_PREDICTION_CLASSES: _LIST, a.ML_LABEL_VALUES: _LIST, a.ML_LABEL_RELEVANCE: _LIST,
                 a.ML_PREDICTION_SCORES: _STAGE, a.ML_PREDICTION_SCORE: _PLAIN}
_KEY_KINDS: ByteCache[str, str] = ByteCache("decode.key_kinds", 4 << 20, lambda k, v: approx_size(k) + 64)
"""Attribute key -> kind (keys repeat on every record; application keys are many but bounded in bytes)."""


def _key_kind(key: str) -> str:
    kind = _KINDS.get(key) or (_SEGMENT_KEY if key.startswith(_SEGMENT) else _FEATURE_KEY
                               if key.startswith(_FEATURE) else _IGNORE)
    return _KEY_KINDS.put(key, kind)


_Plan = tuple[dict[str, int], int, int, int, int, int, int, int]
"""What :func:`_record` checks, precomputed from a :class:`LimitsConfig`: (byte limit of a string value by
attribute kind, a length no string limit is reached below (in characters), segment key fast/exact bounds, feature key
fast/exact bounds, segments per record, features per record)."""
_PLANS: dict[int, tuple[LimitsConfig, _Plan]] = {}


def _plan(limits: LimitsConfig) -> _Plan:
    """The :data:`_Plan` of ``limits``, cached by identity (hashing the frozen config per record cost ~1 µs)."""
    cached = _PLANS.get(id(limits))
    if cached is not None and cached[0] is limits:
        return cached[1]
    table = {_ID: limits.prediction_id_bytes, _MODEL: limits.model_bytes, _TASK: TASK_BYTES,
             _CLASS: limits.class_bytes, _LIST: limits.class_bytes, _STAGE: limits.class_bytes,
             _PLAIN: limits.class_bytes, _SEGMENT_KEY: limits.segment_bytes, _FEATURE_KEY: limits.feature_value_bytes}
    segment_key, feature_key = _SEGMENT_LEN + limits.segment_bytes, _FEATURE_LEN + limits.feature_name_bytes
    plan = (table, min(table.values()) >> 2, segment_key >> 2, segment_key, feature_key >> 2, feature_key,
            limits.segments_per_record, limits.features_per_record)
    if len(_PLANS) >= 64:
        _PLANS.clear()
    _PLANS[id(limits)] = (limits, plan)
    return plan


def _check_list(arr: ArrayValue, key: str, limits: LimitsConfig) -> None:
    """Limits of a list attribute: item count, then each string item's length."""
    items = arr.values
    cap = limits.class_bytes
    if len(items) <= limits.classes_per_record and arr.ByteSize() <= cap:  # no item can be longer than the whole
        return
    if len(items) > limits.classes_per_record:
        raise Reject(RejectReason.TOO_MANY, limit_message(LIMIT_ITEMS, shown(key), len(items),
                                                          limits.classes_per_record))
    cap = limits.class_bytes
    for x in items:
        s = x.string_value
        if len(s) > cap >> 2 and _over(s, cap):
            raise Reject(RejectReason.TOO_LONG, limit_message(LIMIT_ITEM, shown(key), utf8_len(s), cap))


def _attribute_value(v: Any, key: str, kind: str, fast: int, table: dict[str, int], limits: LimitsConfig) -> Any:
    """The value of a known attribute (phase 1 checked: string length, list limits); arrays are kept lazily."""
    val: Any = v.string_value
    if val:
        if len(val) > fast and _over(val, table[kind]):
            raise Reject(RejectReason.TOO_LONG, limit_message(LIMIT_VALUE, shown(key), utf8_len(val), table[kind]))
        return val
    which = v.WhichOneof("value")
    if which == "double_value":
        return v.double_value
    if which == "array_value":
        val = v.array_value  # converted only where used (_arr)
        if kind is _LIST or kind is _STAGE:
            _check_list(val, key, limits)
        return val
    return val if which == "string_value" else _value(v)


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


@functools.lru_cache(maxsize=16)
def _c_limits(limits: LimitsConfig) -> tuple[int, ...]:
    """The limits as the C decoder takes them (order: see ``LIMITS`` in ``_fastdecode.c``)."""
    return (limits.prediction_id_bytes, limits.model_bytes, TASK_BYTES, limits.class_bytes, limits.segment_bytes,
            limits.feature_name_bytes, limits.feature_value_bytes, limits.segments_per_record,
            limits.features_per_record, limits.classes_per_record)


def decode_body(body: bytes, now: float, extras: bool = True, limits: LimitsConfig = DEFAULT_LIMITS,
                parts: bool = True) -> Decoded:
    """Decode a serialized ``ExportLogsServiceRequest``: the C fast path when it is built, else the Python path.

    Both give the same :class:`Decoded` (``tests/processor/test_fastdecode.py``): the C code decodes the records of
    the common shapes itself, hands every other ``ml.*`` record to :func:`_record` as its own bytes, and leaves a
    request it does not fully understand (malformed, exotic encodings) to the Python path as a whole.

    A request larger than :data:`PART_BYTES` (with ``parts``) is validated as a whole here (so it is refused, or
    not, before anything of it is committed) and decoded in parts later, on demand (:attr:`Decoded.parts`).

    Raises:
        google.protobuf.message.DecodeError: ``body`` is not a valid ``ExportLogsServiceRequest``.
    """
    if parts and len(body) > PART_BYTES:
        return _in_parts(body, now, extras, limits)
    out = _c_decode(body, now, extras, limits)
    if out is not None:
        return out
    return decode_request(ExportLogsServiceRequest.FromString(body), now, extras, limits)


def _c_decode(body: bytes, now: float, extras: bool, limits: LimitsConfig, start: int = 0, count: int = -1,
              dry: bool = False) -> Decoded | None:
    """The C decoder's result (records ``[start, start + count)``), or None without it or when it hands back."""
    if _native.decoder is None:
        return None
    out = Decoded()

    def fallback(record: bytes) -> None:
        rec = LogRecord.FromString(record)
        _record(rec, rec.event_name, out, now, extras, limits)

    counts = _native.decoder.decode(body, now, extras, out.predictions, out.extras, out.labels, fallback,
                                    out.reject_limit, _c_limits(limits), start, count, dry)
    if counts is None:
        return None
    out.received, out.ignored, too_long, too_many, _ = counts
    if too_long:
        out.dropped[FeatureDropReason.TOO_LONG] += too_long
    if too_many:
        out.dropped[FeatureDropReason.TOO_MANY] += too_many
    return out


def _in_parts(body: bytes, now: float, extras: bool, limits: LimitsConfig) -> Decoded:
    """A large request: validated and counted now, decoded in parts of :data:`PART_RECORDS` records on demand."""
    counted = _c_decode(body, now, extras, limits, dry=True)
    if counted is not None:
        def c_parts() -> Iterator[Decoded]:
            for start in range(0, counted.received, PART_RECORDS):
                part = _c_decode(body, now, extras, limits, start, PART_RECORDS)
                if part is None:  # cannot happen (the whole request was validated): the Python path decides
                    part = decode_request(ExportLogsServiceRequest.FromString(body), now, extras, limits, start,
                                          PART_RECORDS)
                yield part

        return Decoded(received=counted.received, ignored=counted.ignored, parts=c_parts)
    request = ExportLogsServiceRequest.FromString(body)  # raises DecodeError before anything is committed
    received = sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    ignored = sum(1 for rl in request.resource_logs for sl in rl.scope_logs for rec in sl.log_records
                  if rec.event_name != ML_PREDICTION_EVENT and rec.event_name != ML_LABEL_EVENT)

    def python_parts() -> Iterator[Decoded]:
        for start in range(0, received, PART_RECORDS):
            yield decode_request(request, now, extras, limits, start, PART_RECORDS)

    return Decoded(received=received, ignored=ignored, parts=python_parts)


_native.configure({
    "prediction_event": ML_PREDICTION_EVENT, "label_event": ML_LABEL_EVENT,
    "model": a.ML_MODEL_NAME, "version": a.ML_MODEL_VERSION, "task": a.ML_TASK, "id": a.ML_PREDICTION_ID,
    "pred_value": a.ML_PREDICTION_VALUE, "pred_values": a.ML_PREDICTION_VALUES, "score": a.ML_PREDICTION_SCORE,
    "scores": a.ML_PREDICTION_SCORES, "classes": a.ML_PREDICTION_CLASSES, "label_value": a.ML_LABEL_VALUE,
    "label_values": a.ML_LABEL_VALUES, "label_relevance": a.ML_LABEL_RELEVANCE,
    "segment_prefix": _SEGMENT, "feature_prefix": _FEATURE, "namespace": a.ML_NAMESPACE,
    "binary": Task.BINARY, "multiclass": Task.MULTICLASS, "regression": Task.REGRESSION,
    "binary_default_positive": _DEFAULT_POSITIVE, "sep": SEP,
    "segment_cache": _C_SEGMENTS.data, "classes_cache": _CLASSES.data, "segment_of": _c_segment,
    "intern_classes": _intern_classes,
})
