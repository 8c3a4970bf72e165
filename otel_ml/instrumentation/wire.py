"""A hand-written protobuf encoder for OTLP ``ExportLogsServiceRequest`` bytes.

Building records through the generated protobuf classes costs tens of microseconds per record; encoding straight
to bytes with precomputed constant parts costs a few. Only the subset of OTLP that otel-ml events use is encoded:
``LogRecord`` fields 1 (time), 6 (attributes), 8 (flags), 9 (trace_id), 10 (span_id), 11 (observed time) and
12 (event_name); ``AnyValue`` string, bool, int, double and arrays of them. The output is standard OTLP, checked
field by field against ``opentelemetry-proto`` in ``tests/instrumentation``.

Field numbers (opentelemetry/proto/logs/v1/logs.proto, common/v1/common.proto, collector/logs/v1/logs_service.proto):
``ExportLogsServiceRequest.resource_logs = 1``; ``ResourceLogs{resource = 1, scope_logs = 2}``;
``Resource{attributes = 1}``; ``ScopeLogs{scope = 1, log_records = 2}``; ``InstrumentationScope{name = 1,
version = 2, attributes = 3}``; ``KeyValue{key = 1, value = 2}``; ``AnyValue{string_value = 1, bool_value = 2,
int_value = 3, double_value = 4, array_value = 5}``; ``ArrayValue{values = 1}``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack

_VARINT_CACHE = [bytes([i]) for i in range(128)]


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negative int64 as its 10-byte two's complement)."""
    if 0 <= n < 128:
        return _VARINT_CACHE[n]
    if n < 0:
        n &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_bytes(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: ``tag`` is the field number."""
    return varint(tag << 3 | 2) + varint(len(payload)) + payload


def any_value(value: Any) -> bytes:
    """Encode an ``AnyValue`` (str, bool, int, float or a sequence of those)."""
    t = type(value)
    if t is str:
        raw = value.encode("utf-8", "replace")
        return b"\x0a" + varint(len(raw)) + raw
    if t is float:
        return b"\x21" + _pack_d(value)
    if t is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if t is int:
        return b"\x18" + varint(value)
    if isinstance(value, (list, tuple)):
        inner = array_items(value)
        return b"\x2a" + varint(len(inner)) + inner
    return any_value(str(value))


_FLOAT_ONLY = {float}
_STR_ONLY = {str}
_DOUBLE_ITEM = b"\x0a\x09\x21"  # ArrayValue.values (field 1), length 9, AnyValue.double_value (field 4)


def array_items(values: list[Any] | tuple[Any, ...]) -> bytes:
    """The body of an ``ArrayValue``: each item as a length-delimited ``AnyValue`` (fast paths for doubles and
    strings)."""
    if not values:
        return b""
    types = set(map(type, values))
    if types == _FLOAT_ONLY:
        return _DOUBLE_ITEM + _DOUBLE_ITEM.join([_pack_d(v) for v in values])
    if types == _STR_ONLY:
        parts = []
        for v in values:
            raw = v.encode("utf-8", "replace")
            n = len(raw)
            if n < 126:
                parts.append(b"\x0a" + _VARINT_CACHE[n + 2] + b"\x0a" + _VARINT_CACHE[n] + raw)
            else:
                parts.append(field_bytes(1, b"\x0a" + varint(n) + raw))
        return b"".join(parts)
    return b"".join([field_bytes(1, any_value(v)) for v in values])


def key_value(key: str, value: Any) -> bytes:
    """Encode one ``KeyValue`` message body."""
    kraw = key.encode("utf-8", "replace")
    return b"\x0a" + varint(len(kraw)) + kraw + field_bytes(2, any_value(value))


def attributes(tag: int, attrs: Mapping[str, Any]) -> bytes:
    """Repeated ``KeyValue`` field ``tag`` holding every item of ``attrs``."""
    return b"".join(field_bytes(tag, key_value(k, v)) for k, v in attrs.items())


class AttributeEncoder:
    """Encodes ``LogRecord.attributes`` entries (field 6) with cached per-key prefixes.

    Every entry is ``0x32 <len> 0x0a <klen> <key> 0x12 <vlen> <AnyValue>``; for a double the lengths are constant,
    so the whole prefix is cached per key and one concatenation with the packed double remains.
    """

    __slots__ = ("_dbl", "_dbl_arr", "_key", "_small")

    _SMALL_CACHE_SIZE = 20_000

    def __init__(self) -> None:
        self._key: dict[str, bytes] = {}
        self._dbl: dict[str, bytes] = {}
        self._small: dict[tuple[Any, ...], bytes] = {}
        self._dbl_arr: dict[tuple[str, int], bytes] = {}

    def _key_bytes(self, key: str) -> bytes:
        kb = self._key.get(key)
        if kb is None:
            raw = key.encode("utf-8", "replace")
            kb = b"\x0a" + varint(len(raw)) + raw
            if len(self._key) < 100_000:
                self._key[key] = kb
        return kb

    def double_prefix(self, key: str) -> bytes:
        """Everything of a double attribute entry but the 8 value bytes (cached per key)."""
        prefix = self._dbl.get(key)
        if prefix is None:
            kb = self._key_bytes(key)
            prefix = b"\x32" + varint(len(kb) + 11) + kb + b"\x12\x09\x21"
            if len(self._dbl) < 100_000:
                self._dbl[key] = prefix
        return prefix

    def double(self, key: str, value: float) -> bytes:
        """A double attribute."""
        return self.double_prefix(key) + _pack_d(value)

    def string(self, key: str, value: str) -> bytes:
        """A string attribute."""
        raw = value.encode("utf-8", "replace")
        n = len(raw)
        if n < 100:
            kb = self._key_bytes(key)
            if len(kb) < 24:  # every length below fits one varint byte
                return b"".join((b"\x32", _VARINT_CACHE[len(kb) + n + 4], kb, b"\x12", _VARINT_CACHE[n + 2], b"\x0a",
                                 _VARINT_CACHE[n], raw))
        av = b"\x0a" + varint(len(raw)) + raw
        kv = self._key_bytes(key) + b"\x12" + varint(len(av)) + av
        return b"\x32" + varint(len(kv)) + kv

    def encode_pairs(self, pairs: Iterable[tuple[str, Any]], out: list[bytes]) -> None:
        """Append the encoded entries of ``pairs`` to ``out``.

        Doubles use the cached per-key prefix; short strings, ints and bools (categorical values: predicted
        classes, segments, categorical features) are cached whole in a bounded dict that is cleared when full.
        """
        dbl = self._dbl
        small = self._small
        dbl_arr = self._dbl_arr
        append = out.append
        pack_d = _pack_d
        for k, v in pairs:
            t = type(v)
            if t is float:
                prefix = dbl.get(k)
                append(self.double(k, v) if prefix is None else prefix + pack_d(v))
            elif t is str:
                if len(v) <= 64:
                    b = small.get((k, v))
                    if b is None:
                        b = self._cache_small((k, v), k, v)
                    append(b)
                else:
                    append(self.string(k, v))
            elif t is bool or t is int:
                b = small.get((k, t, v))
                if b is None:
                    b = self._cache_small((k, t, v), k, v)
                append(b)
            elif t is tuple:  # validated doubles (the normalizer's score arrays)
                prefix = dbl_arr.get((k, len(v)))
                if prefix is None:
                    prefix = self._double_array_prefix(k, len(v))
                append(prefix + _DOUBLE_ITEM.join(map(pack_d, v)))
            elif t is list:
                append(self.array(k, v))
            else:
                append(self.value(k, v))

    def _double_array_prefix(self, key: str, n: int) -> bytes:
        """Everything of an entry holding ``n`` doubles up to the first value's 8 bytes (cached per key and n)."""
        inner = 11 * n
        kb = self._key_bytes(key)
        av = 1 + len(varint(inner)) + inner
        kv = len(kb) + 1 + len(varint(av)) + av
        prefix = b"".join((b"\x32", varint(kv), kb, b"\x12", varint(av), b"\x2a", varint(inner), _DOUBLE_ITEM))
        if len(self._dbl_arr) < 10_000:
            self._dbl_arr[(key, n)] = prefix
        return prefix

    def scalar(self, k: str, v: Any) -> bytes:
        """One entry of a validated scalar attribute (float, str, int, bool), with the caches of
        :meth:`encode_pairs`."""
        t = type(v)
        if t is float:
            prefix = self._dbl.get(k)
            return self.double(k, v) if prefix is None else prefix + _pack_d(v)
        if t is str:
            if len(v) > 64:
                return self.string(k, v)
            b = self._small.get((k, v))
            return self._cache_small((k, v), k, v) if b is None else b
        b = self._small.get((k, t, v))
        return self._cache_small((k, t, v), k, v) if b is None else b

    def _cache_small(self, cache_key: tuple[Any, ...], key: str, value: Any) -> bytes:
        b = self.value(key, value)
        if len(self._small) >= self._SMALL_CACHE_SIZE:
            self._small.clear()
        self._small[cache_key] = b
        return b

    def array(self, key: str, values: list[Any]) -> bytes:
        """An array attribute (``ArrayValue`` of doubles, strings or mixed scalars)."""
        inner = array_items(values)
        kb = self._key_bytes(key)
        n = len(inner)
        av_len = n + (1 if n < 128 else len(varint(n))) + 1
        kv_len = len(kb) + 1 + (1 if av_len < 128 else len(varint(av_len))) + av_len
        return b"".join((b"\x32", varint(kv_len), kb, b"\x12", varint(av_len), b"\x2a", varint(n), inner))

    def value(self, key: str, value: Any) -> bytes:
        """Any supported attribute value (str, float, int, bool, list of those)."""
        t = type(value)
        if t is float:
            return self.double(key, value)
        if t is str:
            return self.string(key, value)
        av = any_value(value)
        kv = self._key_bytes(key) + b"\x12" + varint(len(av)) + av
        return b"\x32" + varint(len(kv)) + kv


class FeatureEncoder:
    """What the normalizer needs to encode feature attributes right away (see ``Normalizer.features``).

    Attributes:
        double_prefixes: Feature name -> everything of its double attribute entry but the value bytes.
        pack_double: Packs a double's 8 value bytes.
        values: ``(feature name, type, value)`` -> the whole entry of a categorical value seen before.
    """

    __slots__ = ("_enc", "double_prefixes", "pack_double", "values")

    _VALUES_SIZE = 20_000

    def __init__(self, enc: AttributeEncoder) -> None:
        self._enc = enc
        self.double_prefixes: dict[Any, bytes] = {}
        self.pack_double = _pack_d
        self.values: dict[tuple[Any, type, Any], bytes] = {}
        """``(feature name, type, value)`` -> whole entry, for categorical values (bounded, cleared when full)."""

    def encode(self, key: str, value: Any) -> bytes:
        """One validated scalar attribute entry."""
        return self._enc.scalar(key, value)

    def remember_value(self, name: Any, t: type, value: Any, entry: bytes) -> None:
        """Cache the encoded ``entry`` of a short string, bool or int feature value."""
        if len(self.values) >= self._VALUES_SIZE:
            self.values.clear()
        self.values[(name, t, value)] = entry

    def remember_double(self, name: Any, key: str) -> None:
        """Cache the double prefix of feature ``name`` (attribute ``key``), bounded."""
        if len(self.double_prefixes) < 10_000:
            self.double_prefixes[name] = self._enc.double_prefix(key)


def event_name_field(name: str) -> bytes:
    """Field 12 (``event_name``) bytes for ``name``."""
    raw = name.encode()
    return b"\x62" + varint(len(raw)) + raw


def scope_header(name: str, version: str, attrs: Mapping[str, Any]) -> bytes:
    """The encoded ``InstrumentationScope`` field of ``ScopeLogs`` (field 1, with tag and length)."""
    body = field_bytes(1, name.encode()) + field_bytes(2, version.encode()) + attributes(3, attrs)
    return field_bytes(1, body)


def resource_field(attrs: Mapping[str, Any]) -> bytes:
    """The encoded ``Resource`` field of ``ResourceLogs`` / ``ResourceMetrics`` (field 1, with tag and length)."""
    return field_bytes(1, attributes(1, attrs))


_RECORD_HEADS = [b"\x12" + varint(n) for n in range(1 << 14)]
"""``ScopeLogs.log_records`` tag and length for every record shorter than 16 KiB (1- and 2-byte lengths)."""


def logs_request(resource: bytes, scope: bytes, records: Sequence[bytes]) -> bytes:
    """An ``ExportLogsServiceRequest`` with one resource and one scope holding ``records`` (one join: the
    enclosing lengths are computed first, so the records are copied once)."""
    heads = _RECORD_HEADS
    limit = len(heads)
    framed = [heads[len(r)] if len(r) < limit else b"\x12" + varint(len(r)) for r in records]
    scope_logs_len = len(scope) + sum(map(len, framed)) + sum(map(len, records))
    scope_logs_head = b"\x12" + varint(scope_logs_len)
    resource_logs_len = len(resource) + len(scope_logs_head) + scope_logs_len
    parts = [b"\x0a" + varint(resource_logs_len), resource, scope_logs_head, scope]
    parts += [x for pair in zip(framed, records, strict=True) for x in pair]
    return b"".join(parts)
