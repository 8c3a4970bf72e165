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

Usage: ``decode_body(body, now, extras, limits)`` (the receivers, on their threads) returns a :class:`Decoded`;
``decode_request(request, now, ...)`` decodes an already parsed request with the Python path.

Modules (this package re-exports their public names; import from ``otel_ml.processor.decode``):

- :mod:`~otel_ml.processor.decode.framing`: :func:`decode_body`, the entry point: C or Python path, a large
  request validated whole then decoded in parts (:data:`PART_BYTES`, :data:`PART_RECORDS`).
- :mod:`~otel_ml.processor.decode.result`: :class:`Decoded`, :class:`Reject`, bounded rejection messages.
- :mod:`~otel_ml.processor.decode.limits`: phase 1, the limits (attribute kinds, what limit each value has).
- :mod:`~otel_ml.processor.decode.rows`: phase 2, attribute types and values -> rows (and the decoder's caches).
- :mod:`~otel_ml.processor.decode.python_path`: the Python decoder (one record, a parsed request).
- :mod:`~otel_ml.processor.decode.c_path`: glue to the C decoder (``_fastdecode.c``, :mod:`otel_ml.processor._native`).
"""

from otel_ml.processor.decode.c_path import _c_limits
from otel_ml.processor.decode.framing import PART_BYTES, PART_RECORDS, decode_body
from otel_ml.processor.decode.limits import DEFAULT_LIMITS, TASK_BYTES
from otel_ml.processor.decode.python_path import _record, decode_request
from otel_ml.processor.decode.result import (
    LIMIT_DIMENSION,
    LIMIT_ITEM,
    LIMIT_ITEMS,
    LIMIT_SEGMENTS,
    LIMIT_VALUE,
    MAX_ERROR_MESSAGE,
    MAX_MESSAGE,
    SHOWN_BYTES,
    Decoded,
    Extra,
    Reject,
    error_message,
    limit_message,
    shown,
    shown_bytes,
    utf8_len,
)
from otel_ml.processor.decode.rows import BAD

__all__ = [
    "BAD",
    "DEFAULT_LIMITS",
    "LIMIT_DIMENSION",
    "LIMIT_ITEM",
    "LIMIT_ITEMS",
    "LIMIT_SEGMENTS",
    "LIMIT_VALUE",
    "MAX_ERROR_MESSAGE",
    "MAX_MESSAGE",
    "PART_BYTES",
    "PART_RECORDS",
    "SHOWN_BYTES",
    "TASK_BYTES",
    "Decoded",
    "Extra",
    "Reject",
    "_c_limits",
    "_record",
    "decode_body",
    "decode_request",
    "error_message",
    "limit_message",
    "shown",
    "shown_bytes",
    "utf8_len",
]
