"""The fixed SQL texts of the hot path: ``IN`` lists of exactly :data:`_CHUNK` values and multi-row ``INSERT`` s
of :data:`_CHUNK` rows then powers of two (a handful of statements, each prepared once).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator, Sequence
from operator import itemgetter
from typing import Any

from otel_ml.processor.records import ARRIVED

_CHUNK = 256
"""Keys per lookup / rowids per tombstone update, and rows per multi-row INSERT (fixed: the statements stay cached)."""
_LOOKUP_SQL = f"SELECT rowid, k, arrived, row FROM pending WHERE k IN ({','.join('?' * _CHUNK)})"
_TOMBSTONE_SQL = f"UPDATE pending SET row = NULL WHERE rowid IN ({','.join('?' * _CHUNK)})"
_INSERT_PENDING = ("INSERT INTO pending (k, arrived, row) VALUES ", "(?,?,?)")
_INSERT_DONE = ("INSERT OR IGNORE INTO pending (k, arrived, row) VALUES ", "(?,?,NULL)")
_INSERT_GONE = ("INSERT OR IGNORE INTO pending (k, arrived, row) VALUES ", "(?,?,?)")
_ARRIVAL_KEY = itemgetter(ARRIVED, 0)
_NO_KEY = ""
"""Padding of key lookups: a join key is never empty (it is ``model + U+001F + id``)."""


def _padded_chunks(values: Sequence[Any], pad: Any) -> Iterator[Sequence[Any]]:
    """``values`` in chunks of exactly :data:`_CHUNK`, the last padded with ``pad``.

    For the ``IN (...)`` statements: one SQL text whatever the count (prepared once). ``pad`` matches no row (a key
    or rowid that cannot exist) and is small: padding by repeating a real value bound it up to 255 more times, and
    SQLite copies every bound text (a 1 MiB prediction id cost ~260 MB of memory for one lookup).
    """
    for i in range(0, len(values), _CHUNK):
        chunk = values[i:i + _CHUNK]
        if len(chunk) < _CHUNK:
            chunk = [*chunk, *[pad] * (_CHUNK - len(chunk))]
        yield chunk


def _insert_sizes(n: int) -> Iterator[int]:
    """Row counts of the multi-row INSERTs writing ``n`` rows: full :data:`_CHUNK` s, the rest in powers of two.

    At most ``log2(_CHUNK) + 1`` distinct statements exist, so all stay in the connection's statement cache.
    """
    full, rest = divmod(n, _CHUNK)
    yield from itertools.repeat(_CHUNK, full)
    size = _CHUNK
    while rest:
        size //= 2
        if rest >= size:
            yield size
            rest -= size


@functools.cache
def _values_sql(head: str, row: str, n: int) -> str:
    """``head`` followed by ``n`` copies of the ``row`` placeholders."""
    return head + ",".join(itertools.repeat(row, n))
