"""Documented limits on what one event may carry.

Values beyond a limit are capped, truncated or replaced, counted in ``ml.client.values.truncated`` (attribute
``ml.reason`` = the reason constant below) and never raised into the caller.

| limit | value | what happens beyond it | ``ml.reason`` |
|---|---|---|---|
| string length | :data:`MAX_STRING_LENGTH` characters | truncated | ``too_long`` |
| array length (scores, classes, sets, ranked lists) | :data:`MAX_ARRAY_LENGTH` items | truncated | ``too_many_items`` |
| features per event | :data:`MAX_FEATURES` (the first ones given) | further ones dropped | ``too_many_features`` |
| segments per event | :data:`MAX_SEGMENTS` | further segments dropped | ``too_many_segments`` |
| NaN / +inf / -inf feature, score or value | - | attribute left out | ``not_finite`` |
| a value of an unsupported type (objects, nested containers) | - | ``str(value)`` (then truncated) | ``wrong_type`` |
| a value whose ``str()`` raises | - | attribute left out | ``unserializable`` |
| rows of one ``log_predictions`` batch | :data:`MAX_BATCH_ROWS` | further rows dropped | ``too_many_rows`` |
| classes on ``ml.client.predictions`` per model | :data:`MAX_METRIC_CLASSES` | ``_other`` | ``class_overflow`` |
| class index outside ``classes`` | ``len(classes)`` | event dropped (``invalid``) | ``unknown_class_index`` |
"""

from __future__ import annotations

from typing import Final

MAX_STRING_LENGTH: Final = 1024
"""Longest string attribute value (prediction, label, feature, segment, id), in characters."""

MAX_ARRAY_LENGTH: Final = 1000
"""Most items in one array attribute (scores, classes, predicted set, ranked list, relevance)."""

MAX_FEATURES: Final = 128
"""Most ``ml.feature.*`` attributes on one event."""

MAX_SEGMENTS: Final = 16
"""Most ``ml.segment.*`` attributes on one event."""

MAX_BATCH_ROWS: Final = 1_000_000
"""Most rows taken from one ``log_predictions`` call."""

MAX_METRIC_CLASSES: Final = 100
"""Distinct ``ml.class`` values per model on ``ml.client.predictions``; further classes count as ``_other``."""

MAX_KEY_LENGTH: Final = 256
"""Longest feature or segment name; longer names are truncated."""


class TruncationReason:
    """Values of ``ml.reason`` on ``ml.client.values.truncated``."""

    TOO_LONG: Final = "too_long"
    TOO_MANY_ITEMS: Final = "too_many_items"
    TOO_MANY_FEATURES: Final = "too_many_features"
    TOO_MANY_SEGMENTS: Final = "too_many_segments"
    NOT_FINITE: Final = "not_finite"
    WRONG_TYPE: Final = "wrong_type"
    UNSERIALIZABLE: Final = "unserializable"
    TOO_MANY_ROWS: Final = "too_many_rows"
    CLASS_OVERFLOW: Final = "class_overflow"
    UNKNOWN_CLASS_INDEX: Final = "unknown_class_index"
