"""Hand-encoded OTLP ``ExportMetricsServiceRequest`` bytes for the client metrics (no ``opentelemetry-proto``).

The instrumentation depends on ``opentelemetry-api`` only, so it builds its metrics request with the same
primitives as its log records (:mod:`~otel_ml.instrumentation.wire`). Checked against ``opentelemetry-proto``'s
parser field by field in ``tests/instrumentation/test_wire_metrics.py``.

Field numbers (opentelemetry/proto/metrics/v1/metrics.proto, collector/metrics/v1/metrics_service.proto):
``ExportMetricsServiceRequest.resource_metrics = 1``; ``ResourceMetrics{resource = 1, scope_metrics = 2}``;
``ScopeMetrics{scope = 1, metrics = 2}``; ``Metric{name = 1, description = 2, unit = 3, gauge = 5, sum = 7,
histogram = 9}``; ``Gauge{data_points = 1}``; ``Sum{data_points = 1, aggregation_temporality = 2,
is_monotonic = 3}``; ``Histogram{data_points = 1, aggregation_temporality = 2}``; ``NumberDataPoint{
start_time_unix_nano = 2 (fixed64), time_unix_nano = 3 (fixed64), as_double = 4, as_int = 6 (sfixed64),
attributes = 7}``; ``HistogramDataPoint{start_time_unix_nano = 2, time_unix_nano = 3, count = 4 (fixed64),
sum = 5, bucket_counts = 6 (packed fixed64), explicit_bounds = 7 (packed double), attributes = 9, min = 11,
max = 12}``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from otel_ml.instrumentation.wire import field_bytes, key_value, resource_field, scope_header, varint

CUMULATIVE = 2
"""``AGGREGATION_TEMPORALITY_CUMULATIVE``."""

Attrs = Iterable[tuple[str, Any]]
_pack_fixed64 = struct.Struct("<Q").pack
_pack_sfixed64 = struct.Struct("<q").pack
_pack_double = struct.Struct("<d").pack


def _attributes(tag: int, attrs: Attrs) -> bytes:
    return b"".join(field_bytes(tag, key_value(k, v)) for k, v in attrs if v is not None)


def _fixed64(tag: int, value: int) -> bytes:
    return varint(tag << 3 | 1) + _pack_fixed64(value)


def _double(tag: int, value: float) -> bytes:
    return varint(tag << 3 | 1) + _pack_double(value)


def _number_point(attrs: Attrs, start_ns: int | None, now_ns: int, value: int | float) -> bytes:
    body = b"" if start_ns is None else _fixed64(2, start_ns)
    body += _fixed64(3, now_ns)
    if isinstance(value, float):
        body += _double(4, value)
    else:
        body += b"\x31" + _pack_sfixed64(value)  # as_int: field 6, wire type 1
    return body + _attributes(7, attrs)


def _metric(name: str, unit: str, description: str, data_tag: int, data: bytes) -> bytes:
    body = field_bytes(1, name.encode()) + field_bytes(2, description.encode()) + field_bytes(3, unit.encode())
    return body + field_bytes(data_tag, data)


def sum_metric(name: str, unit: str, description: str, points: Sequence[tuple[Attrs, int | float]], start_ns: int,
               now_ns: int, monotonic: bool = True) -> bytes:
    """A cumulative ``Sum`` metric (a ``Metric`` message body)."""
    data = b"".join(field_bytes(1, _number_point(a, start_ns, now_ns, v)) for a, v in points)
    data += b"\x10" + varint(CUMULATIVE) + (b"\x18\x01" if monotonic else b"")
    return _metric(name, unit, description, 7, data)


def gauge_metric(name: str, unit: str, description: str, points: Sequence[tuple[Attrs, int | float]],
                 now_ns: int) -> bytes:
    """A ``Gauge`` metric (a ``Metric`` message body)."""
    data = b"".join(field_bytes(1, _number_point(a, None, now_ns, v)) for a, v in points)
    return _metric(name, unit, description, 5, data)


def histogram_point(attrs: Attrs, start_ns: int, now_ns: int, count: int, total: float, bucket_counts: Sequence[int],
                    bounds: Sequence[float], minimum: float, maximum: float) -> bytes:
    """A ``HistogramDataPoint`` message body."""
    counts = b"".join(map(_pack_fixed64, bucket_counts))
    doubles = b"".join(map(_pack_double, bounds))
    return b"".join((_fixed64(2, start_ns), _fixed64(3, now_ns), _fixed64(4, count), _double(5, total),
                     field_bytes(6, counts), field_bytes(7, doubles), _attributes(9, attrs), _double(11, minimum),
                     _double(12, maximum)))


def histogram_metric(name: str, unit: str, description: str, points: Sequence[bytes]) -> bytes:
    """A cumulative ``Histogram`` metric of encoded :func:`histogram_point` bodies (a ``Metric`` message body)."""
    data = b"".join(field_bytes(1, p) for p in points) + b"\x10" + varint(CUMULATIVE)
    return _metric(name, unit, description, 9, data)


def metrics_request(resource: Mapping[str, Any], scope_name: str, scope_version: str,
                    scope_attributes: Mapping[str, Any], metrics: Sequence[bytes]) -> bytes:
    """An ``ExportMetricsServiceRequest`` with one resource and one scope holding ``metrics``."""
    scope_metrics = scope_header(scope_name, scope_version, scope_attributes)
    scope_metrics += b"".join(field_bytes(2, m) for m in metrics)
    return field_bytes(1, resource_field(resource) + field_bytes(2, scope_metrics))
