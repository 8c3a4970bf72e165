"""Keys of the aggregates: a data point's attributes (:data:`Attrs`), ``(metric, attrs)`` (:data:`Key`), their
stable text form in the store (:func:`encode_attrs`, :func:`decode_attrs`), and which attribute keys are capped
(:data:`CAPPED_KEYS`).
"""

from __future__ import annotations

import json
from typing import Final

from otel_ml.processor.caches import ByteCache
from otel_ml.semconv import attributes as a

Attrs = tuple[tuple[str, str], ...]
"""Attributes of one data point: sorted ``(key, value)`` pairs."""
Key = tuple[str, Attrs]

CAPPED_KEYS: Final = frozenset({a.ML_MODEL_VERSION, a.ML_SEGMENT, a.ML_CLASS, a.ML_FEATURE_NAME, a.ML_BIN,
                                a.ML_WEAK_SEGMENT})
"""Metric attributes whose values are capped per model (the others are bounded enums)."""
_MODEL_SCOPE: Final = ""
_MODELS: Final = (_MODEL_SCOPE, a.ML_MODEL_NAME)
"""The cap of model names."""

_ENCODED: ByteCache[Attrs, str] = ByteCache("aggregates.encoded", 16 << 20)


def encode_attrs(attrs: Attrs) -> str:
    """Stable text form of an attribute tuple (database key)."""
    text = _ENCODED.get(attrs)
    if text is None:
        text = _ENCODED.put(attrs, json.dumps(attrs, separators=(",", ":")))
    return text


def decode_attrs(text: str) -> Attrs:
    """Inverse of :func:`encode_attrs`."""
    return tuple((str(k), str(v)) for k, v in json.loads(text))
