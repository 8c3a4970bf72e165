"""Phase 1 of a record's validation: the limits (:class:`~otel_ml.processor.config.LimitsConfig`), attribute by
attribute in wire order, before any value is used: what each key is (its kind) and which limit its value has.
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry.proto.common.v1.common_pb2 import ArrayValue

from otel_ml.processor.caches import ByteCache, approx_size
from otel_ml.processor.config import LimitsConfig
from otel_ml.processor.decode.result import (
    LIMIT_ITEM,
    LIMIT_ITEMS,
    LIMIT_VALUE,
    Reject,
    _over,
    limit_message,
    shown,
    utf8_len,
)
from otel_ml.processor.decode.rows import _FEATURE, _FEATURE_LEN, _SEGMENT, _SEGMENT_LEN, _value
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import RejectReason

DEFAULT_LIMITS: Final = LimitsConfig()
TASK_BYTES: Final = 64
"""Longest ``ml.task`` value looked at (longer than any task: rejected ``too_long`` without being copied)."""


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
