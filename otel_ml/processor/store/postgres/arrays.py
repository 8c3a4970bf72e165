"""Array parameters already in PostgreSQL's binary format (``text[]``, ``float8[]``, ``bytea[]``, ``int2[]``),
built with one join per array instead of psycopg's dumping element by element.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain, repeat

_I32 = struct.Struct("!i").pack
_F8 = struct.Struct("!id").pack  # an element's length (8) and its value
_NULL = _I32(-1)
_HEAD = struct.Struct("!iiIii").pack  # 1 dimension, has-NULL flag, element type oid, length, lower bound 1
_EMPTY = struct.Struct("!iiI").pack  # 0 dimensions


class _Array(bytes):
    """A one-dimensional array parameter already in PostgreSQL's binary format.

    psycopg dumps a list element by element in Python (~0.4 µs each: 5 arrays of a 2000-key group cost the writer
    ~4 ms); these are built with one join per array (:func:`_texts`, :func:`_floats`, :func:`_byteas`, :func:`_int2s`)
    and passed through as they are by :class:`_ArrayDumper` (registered on every connection by :func:`connect`).
    """

    oid = 0


class _TextArray(_Array):
    oid = 1009


class _Float8Array(_Array):
    oid = 1022


class _ByteaArray(_Array):
    oid = 1001


class _Int2Array(_Array):
    oid = 1005


def _texts(items: Sequence[str]) -> _TextArray:
    """``text[]`` of ``items`` (never NULL)."""
    if not items:
        return _TextArray(_EMPTY(0, 0, 25))
    encoded = list(map(str.encode, items))
    lengths = map(_I32, map(len, encoded))
    body = b"".join(chain.from_iterable(zip(lengths, encoded, strict=True)))
    return _TextArray(_HEAD(1, 0, 25, len(items), 1) + body)


def _floats(items: Sequence[float | None]) -> _Float8Array:
    """``float8[]`` of ``items`` (``None`` is NULL)."""
    if not items:
        return _Float8Array(_EMPTY(0, 0, 701))
    if None not in items:
        return _Float8Array(_HEAD(1, 0, 701, len(items), 1) + b"".join(map(_F8, repeat(8, len(items)), items)))
    return _Float8Array(b"".join([_HEAD(1, 1, 701, len(items), 1),
                                  *[_NULL if x is None else _F8(8, x) for x in items]]))


def _byteas(items: Sequence[bytes | None]) -> _ByteaArray:
    """``bytea[]`` of ``items`` (``None`` is NULL)."""
    if not items:
        return _ByteaArray(_EMPTY(0, 0, 17))
    return _ByteaArray(b"".join([_HEAD(1, 1, 17, len(items), 1),
                                 *[_NULL if x is None else _I32(len(x)) + x for x in items]]))


def _int2s(items: Sequence[int]) -> _Int2Array:
    """``int2[]`` of ``items``."""
    if not items:
        return _Int2Array(_EMPTY(0, 0, 21))
    return _Int2Array(struct.pack(f"!iiIii{'ih' * len(items)}", 1, 0, 21, len(items), 1,
                                  *[v for x in items for v in (2, x)]))
