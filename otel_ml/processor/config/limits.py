"""The ``limits:`` section: per-record limits of the decoder (byte lengths, counts per record)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from otel_ml.processor.config.validation import ConfigError, _int, _section

# the limits.* defaults accept everything the instrumentation SDK sends (otel_ml/instrumentation/limits.py: strings
# of 1024 characters, 256-character keys, 16 segments, 128 features, 1000 array items), except metric-label values
# (model name/version, segment values), which become Prometheus labels and are held in the cardinality caps
DEFAULT_PREDICTION_ID_BYTES: Final = 4096
DEFAULT_MODEL_BYTES: Final = 256
DEFAULT_CLASS_BYTES: Final = 4096
DEFAULT_SEGMENT_BYTES: Final = 256
DEFAULT_FEATURE_NAME_BYTES: Final = 1024
DEFAULT_FEATURE_VALUE_BYTES: Final = 4096
DEFAULT_SEGMENTS_PER_RECORD: Final = 16
DEFAULT_FEATURES_PER_RECORD: Final = 128
DEFAULT_CLASSES_PER_RECORD: Final = 1000


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Per-record limits of the decoder (``limits:``): lengths in bytes of UTF-8, counts per record.

    A record beyond a length or count limit is rejected alone (``too_long`` / ``too_many``); a feature beyond its
    limits is dropped from an accepted record (``ml.processor.features.dropped``). The checks run on the raw value
    before it is copied (C decoder) and before any other validation of the record, in wire order.
    """

    prediction_id_bytes: int = DEFAULT_PREDICTION_ID_BYTES
    model_bytes: int = DEFAULT_MODEL_BYTES
    class_bytes: int = DEFAULT_CLASS_BYTES
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    feature_name_bytes: int = DEFAULT_FEATURE_NAME_BYTES
    feature_value_bytes: int = DEFAULT_FEATURE_VALUE_BYTES
    segments_per_record: int = DEFAULT_SEGMENTS_PER_RECORD
    features_per_record: int = DEFAULT_FEATURES_PER_RECORD
    classes_per_record: int = DEFAULT_CLASSES_PER_RECORD


_LIMIT_MINIMUMS: Final = {"prediction_id_bytes": 16, "model_bytes": 8, "class_bytes": 8, "segment_bytes": 8,
                          "feature_name_bytes": 8, "feature_value_bytes": 8, "segments_per_record": 1,
                          "features_per_record": 1, "classes_per_record": 2}
"""Smallest accepted value of each ``limits.*`` key (below it real traffic could not pass)."""
_LIMIT_MAXIMUM: Final = 1 << 24
"""Largest accepted value of any ``limits.*`` key (16 MiB: a limit above the request size bounds nothing)."""


def _limits(raw: Mapping[str, Any]) -> LimitsConfig:
    ex = "limits: {prediction_id_bytes: 4096, class_bytes: 4096, segments_per_record: 16}"
    s = _section(raw, "limits", set(_LIMIT_MINIMUMS), ex)
    values: dict[str, int] = {}
    for name, minimum in _LIMIT_MINIMUMS.items():
        if name in s:
            value = _int(s[name], f"limits.{name}", ex, minimum)
            if value > _LIMIT_MAXIMUM:
                raise ConfigError(f"limits.{name}", f"expected at most {_LIMIT_MAXIMUM}, got {value!r}", ex)
            values[name] = value
    return LimitsConfig(**values)
