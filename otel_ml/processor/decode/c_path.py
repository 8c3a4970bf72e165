"""Glue to the C decoder (``_fastdecode.c``, loaded by :mod:`otel_ml.processor._native`): passes it the names,
caches and callbacks of the Python side once at import, the limits as a tuple, and turns its result into a
:class:`~otel_ml.processor.decode.result.Decoded` (None when it is not built or hands a request back).
"""

from __future__ import annotations

import functools

from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_ml.processor import _native
from otel_ml.processor.config import LimitsConfig
from otel_ml.processor.decode.limits import TASK_BYTES
from otel_ml.processor.decode.python_path import _record
from otel_ml.processor.decode.result import Decoded
from otel_ml.processor.decode.rows import (
    _C_SEGMENTS,
    _CLASSES,
    _DEFAULT_POSITIVE,
    _FEATURE,
    _SEGMENT,
    _c_segment,
    _intern_classes,
)
from otel_ml.processor.records import SEP
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import FeatureDropReason, Task
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT


@functools.lru_cache(maxsize=16)
def _c_limits(limits: LimitsConfig) -> tuple[int, ...]:
    """The limits as the C decoder takes them (order: see ``LIMITS`` in ``_fastdecode.c``)."""
    return (limits.prediction_id_bytes, limits.model_bytes, TASK_BYTES, limits.class_bytes, limits.segment_bytes,
            limits.feature_name_bytes, limits.feature_value_bytes, limits.segments_per_record,
            limits.features_per_record, limits.classes_per_record)


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
