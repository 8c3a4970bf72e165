"""Byte-bounded, sheddable caches of the ingest path.

Every cache the decoder and the aggregates keep across requests (segment strings, interned class tuples, attribute
key kinds, capped attribute tuples, their database encoding) is a :class:`ByteCache`: a dict whose entries are
accounted in approximate bytes (``sys.getsizeof`` of key and value, containers one level deep) and which drops its
oldest entries when a put would exceed its budget. A lookup is a plain ``dict.get`` (the hot path pays nothing for
the accounting); only a put, which happens on a miss, computes sizes. An entry larger than an eighth of the budget
is never stored (a hostile value cannot flush a cache in one put).

Caches register themselves in a process-wide registry: :func:`shed` empties all of them (the memory limiter calls it
under memory pressure: a cache only costs recomputation), :func:`cache_bytes` reports what they hold. Thread-safety:
a cache is written by one thread at a time in practice (the decoder's caches by receiver threads under the GIL,
with dict operations that are atomic; the aggregates' caches by the writer thread); :meth:`ByteCache.put` and
:meth:`ByteCache.shed` take a lock so that the byte count stays exact.
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_REGISTRY: weakref.WeakSet[ByteCache[Any, Any]] = weakref.WeakSet()


def approx_size(obj: object) -> int:
    """Bytes of ``obj``: ``sys.getsizeof``, plus its items for tuples, lists and frozensets (one level deep)."""
    size = sys.getsizeof(obj)
    if isinstance(obj, tuple | list | frozenset):
        for item in obj:
            size += sys.getsizeof(item)
            if isinstance(item, tuple):
                size += sum(map(sys.getsizeof, item))
    return size


class ByteCache(Generic[K, V]):
    """A dict bounded in approximate bytes; oldest entries leave first.

    Args:
        name: For :func:`cache_bytes` and logs.
        max_bytes: Budget of keys and values together.
        size_of: Bytes of one entry (default: :func:`approx_size` of key and value).
    """

    def __init__(self, name: str, max_bytes: int, size_of: Callable[[K, V], int] | None = None) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self.data: dict[K, V] = {}
        self.get = self.data.get
        self.bytes = 0
        self.evictions = 0
        self._size_of = size_of or (lambda k, v: approx_size(k) + approx_size(v))
        self._lock = threading.Lock()
        _REGISTRY.add(self)

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def put(self, key: K, value: V) -> V:
        """Store ``value`` (unless already present or too large); returns the cached value for ``key``."""
        size = self._size_of(key, value)
        if size > self.max_bytes // 8:
            return value
        with self._lock:
            data = self.data
            old = data.get(key)
            if old is not None:
                return old
            data[key] = value
            self.bytes += size
            if self.bytes > self.max_bytes:
                target = self.max_bytes * 3 // 4
                size_of = self._size_of
                while self.bytes > target and data:
                    k = next(iter(data))
                    self.bytes -= size_of(k, data.pop(k))
                    self.evictions += 1
        return value

    def shed(self) -> int:
        """Drop every entry; returns the bytes freed (approximate)."""
        with self._lock:
            freed, self.bytes = self.bytes, 0
            self.data.clear()
        return freed


def shed() -> int:
    """Empty every registered cache (memory pressure); returns the approximate bytes freed."""
    return sum(cache.shed() for cache in list(_REGISTRY))


def cache_bytes() -> dict[str, int]:
    """Approximate bytes held by each registered cache, by name (summed over caches of the same name)."""
    out: dict[str, int] = {}
    for cache in list(_REGISTRY):
        out[cache.name] = out.get(cache.name, 0) + cache.bytes
    return out
