"""A minimal protobuf reader for the OTLP messages the instrumentation itself needs to read, without
``opentelemetry-proto``: export responses (``partial_success``) and, for :class:`~otel_ml.ConsoleTransport`, the
log records and metric points it encoded.

Malformed input raises :class:`ValueError`; callers treat that as "nothing to read".
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

_unpack_double = struct.Struct("<d").unpack_from
_unpack_q = struct.Struct("<q").unpack_from
_unpack_u64 = struct.Struct("<Q").unpack_from


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a message: ``int`` for varints, ``bytes`` for length-delimited and
    the 8 or 4 raw bytes of fixed-size fields."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _varint(buf, pos)
            yield number, 0, value
        elif wire_type == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise ValueError("truncated field")
            yield number, 2, buf[pos:pos + n]
            pos += n
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            if pos + size > end:
                raise ValueError("truncated field")
            yield number, wire_type, buf[pos:pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire_type}")


def partial_rejected(payload: bytes) -> int:
    """Rejected records (logs) or data points (metrics) of an ``Export*ServiceResponse``'s ``partial_success``."""
    for number, wire_type, value in fields(payload):
        if number == 1 and wire_type == 2:
            for inner, inner_type, count in fields(value):
                if inner == 1 and inner_type == 0:
                    return int(count if count < 1 << 63 else count - (1 << 64))
    return 0


def any_value(buf: bytes) -> Any:
    """A Python value of an ``AnyValue`` (string, bool, int, double, array)."""
    for number, wire_type, value in fields(buf):
        if number == 1 and wire_type == 2:
            return value.decode("utf-8", "replace")
        if number == 2 and wire_type == 0:
            return bool(value)
        if number == 3 and wire_type == 0:
            return value - (1 << 64) if value >= 1 << 63 else value
        if number == 4 and wire_type == 1:
            return _unpack_double(value)[0]
        if number == 5 and wire_type == 2:
            return [any_value(item) for n, t, item in fields(value) if n == 1 and t == 2]
    return None


def key_values(buf: bytes, tag: int) -> dict[str, Any]:
    """The ``KeyValue`` entries of repeated field ``tag`` of a message."""
    out: dict[str, Any] = {}
    for number, wire_type, value in fields(buf):
        if number == tag and wire_type == 2:
            key, val = "", None
            for n, t, v in fields(value):
                if n == 1 and t == 2:
                    key = v.decode("utf-8", "replace")
                elif n == 2 and t == 2:
                    val = any_value(v)
            out[key] = val
    return out


def _children(buf: bytes, tag: int) -> Iterator[bytes]:
    return (value for number, wire_type, value in fields(buf) if number == tag and wire_type == 2)


def log_records(body: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event_name, attributes)`` of every record of an ``ExportLogsServiceRequest``."""
    for resource_logs in _children(body, 1):
        for scope_logs in _children(resource_logs, 2):
            for record in _children(scope_logs, 2):
                name = next((v.decode("utf-8", "replace") for n, t, v in fields(record) if n == 12 and t == 2), "")
                yield name, key_values(record, 6)


def metric_points(body: bytes) -> Iterator[tuple[str, dict[str, Any], str]]:
    """``(metric name, attributes, "value=..." or "count=... sum=...")`` of every point of an
    ``ExportMetricsServiceRequest``."""
    for resource_metrics in _children(body, 1):
        for scope_metrics in _children(resource_metrics, 2):
            for metric in _children(scope_metrics, 2):
                name = next((v.decode() for n, t, v in fields(metric) if n == 1 and t == 2), "")
                for number, wire_type, data in fields(metric):
                    if wire_type != 2 or number not in (5, 7, 9):
                        continue
                    for point in _children(data, 1):
                        if number == 9:
                            parts = {n: v for n, t, v in fields(point) if t == 1}
                            count = _unpack_u64(parts.get(4, bytes(8)))[0]
                            total = _unpack_double(parts.get(5, bytes(8)))[0]
                            yield name, key_values(point, 9), f"count={count} sum={total:.6g}"
                        else:
                            value: Any = None
                            for n, t, v in fields(point):
                                if n == 4 and t == 1:
                                    value = _unpack_double(v)[0]
                                elif n == 6 and t == 1:
                                    value = _unpack_q(v)[0]
                            yield name, key_values(point, 7), f"value={value}"
