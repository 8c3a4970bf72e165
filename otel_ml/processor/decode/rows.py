"""Phase 2 of a record's validation: the types and values of the attributes an event needs -> a
:mod:`~otel_ml.processor.records` row (``missing_attribute``, ``wrong_type``, ``unknown_task``,
``not_finite``), with the byte-bounded caches of segment strings and class tuples (shared with the C decoder).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from opentelemetry.proto.common.v1.common_pb2 import ArrayValue

from otel_ml.processor.caches import ByteCache
from otel_ml.processor.decode.result import Extra, Reject, shown
from otel_ml.processor.records import SEP, Row
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import RejectReason, Task

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
