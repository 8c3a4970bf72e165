"""OTLP ``AnyValue`` / ``KeyValue`` messages of Python values (shared by the instrumentation and the processor).

Neutral ground: neither side imports the other. Hot paths hand-encode their bytes (see
:mod:`otel_ml.instrumentation.wire`); this builds ``opentelemetry-proto`` messages for the cold ones (resource and
metric attributes, test and processor fixtures).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList


def any_value(v: Any, *, strict: bool = True) -> AnyValue:
    """AnyValue of a Python value: str, bool, int, float, bytes, a mapping or a sequence of those.

    Args:
        v: The value.
        strict: Raise ``TypeError`` on any other type; when ``False``, use its ``str()`` instead.

    Raises:
        TypeError: ``strict`` and ``v`` (or an element of it) has an unsupported type.
    """
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, bytes):
        return AnyValue(bytes_value=v)
    if isinstance(v, Mapping):
        return AnyValue(kvlist_value=KeyValueList(values=[key_value(k, x, strict=strict) for k, x in v.items()]))
    if isinstance(v, Sequence):
        return AnyValue(array_value=ArrayValue(values=[any_value(x, strict=strict) for x in v]))
    if strict:
        raise TypeError(f"unsupported attribute value {v!r}")
    return AnyValue(string_value=str(v))


def key_value(key: str, v: Any, *, strict: bool = True) -> KeyValue:
    """KeyValue of ``key`` and :func:`any_value` of ``v``."""
    return KeyValue(key=key, value=any_value(v, strict=strict))
