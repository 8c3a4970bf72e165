"""Decoding a serialized request (:func:`decode_body`): the C fast path when it is built, else the Python path;
a request larger than :data:`PART_BYTES` is validated whole, then decoded in parts of :data:`PART_RECORDS`
records on demand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_ml.processor.config import LimitsConfig
from otel_ml.processor.decode.c_path import _c_decode
from otel_ml.processor.decode.limits import DEFAULT_LIMITS
from otel_ml.processor.decode.python_path import decode_request
from otel_ml.processor.decode.result import Decoded
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT

PART_BYTES: Final = 1 << 20
"""A request larger than this is decoded in parts (:attr:`Decoded.parts`)."""
PART_RECORDS: Final = 8192
"""Records per part: a part's rows and the store's work on them take a few MB, whatever the request size (a
16 MiB request of small labels is ~190 000 records: ~45 MB of rows and as much again in the store's temporaries
when decoded and ingested at once)."""


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
