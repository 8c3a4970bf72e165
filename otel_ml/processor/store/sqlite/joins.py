"""The join queries: the lookup of a group's keys (rows, join tombstones, gone tombstones; damaged rows
quarantined) and the write of new rows and tombstones; and :class:`SqliteJoinStore`, assembled from the
connection, expiry and totals parts.
"""

from __future__ import annotations

import marshal
from collections.abc import Sequence

from otel_ml.processor.records import ARRIVED, Row
from otel_ml.processor.store.base import (
    DONE,
)
from otel_ml.processor.store.sqlite.connection import _STORAGE_ERRORS
from otel_ml.processor.store.sqlite.expiry import SqliteExpiry
from otel_ml.processor.store.sqlite.schema import (
    _GONE_BY_BYTE,
    _JSON_START,
    _ROW_WIDTH,
    MARSHAL_VERSION,
    _check_row,
    _decode,
    _loads,
    _reason,
    _Undecodable,
)
from otel_ml.processor.store.sqlite.statements import (
    _ARRIVAL_KEY,
    _INSERT_DONE,
    _INSERT_PENDING,
    _LOOKUP_SQL,
    _NO_KEY,
    _TOMBSTONE_SQL,
    _padded_chunks,
)
from otel_ml.processor.store.sqlite.totals import SqliteTotals


class SqliteJoinStore(SqliteExpiry, SqliteTotals):
    """SQLite WAL backend (see the module docstring for durability, faults and quarantine)."""

    # --- primitives ------------------------------------------------------------------------------------------------
    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:
        self._begin()
        out: dict[str, object] = {}
        rowids = self._rowids = {}
        gone = self._gone_keys = set()
        loads, width, strict = _loads, _ROW_WIDTH, self.strict_decoding
        bad: list[tuple[int, str, float, bytes, str]] = []
        try:
            for chunk in _padded_chunks(keys, _NO_KEY):
                for rowid, k, arrived, blob in self._db.execute(_LOOKUP_SQL, chunk):
                    if blob is None:
                        out[k] = DONE
                        continue
                    rowids[k] = rowid
                    if len(blob) > 1 and blob[0] != _JSON_START:  # a marshal row (one per join): decode inlined
                        try:  # the shape the join relies on: every column, only when strict (see strict_decoding)
                            row = (k, arrived, *loads(blob))
                            if len(row) != width or row[2].__class__ is not str or strict:
                                _check_row(row)
                        except Exception as exc:
                            bad.append((rowid, k, arrived, blob, _reason(exc)))
                            continue
                        out[k] = row
                        continue
                    marker = _GONE_BY_BYTE.get(blob[0]) if len(blob) == 1 else None
                    if marker is not None:
                        out[k] = marker
                        gone.add(k)
                        continue
                    try:
                        out[k] = _decode(k, arrived, blob)
                    except _Undecodable as exc:
                        bad.append((rowid, k, arrived, blob, str(exc) if len(blob) > 1 else "unknown tombstone"))
            if bad:
                self._quarantine(bad, delete=True)
                for _, k, *_rest in bad:
                    rowids.pop(k, None)
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "looking up keys") from exc
        return out

    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], tombstones: Sequence[str], now: float) -> None:
        self._begin()
        try:
            self._writable()
            if inserts:  # in arrival order (rowid order = expiry order); by key within an arrival (a request)
                dumps, version = marshal.dumps, MARSHAL_VERSION
                self._insert_rows(_INSERT_PENDING, [v for r in sorted(inserts, key=_ARRIVAL_KEY)
                                                    for v in (r[0], r[ARRIVED], dumps(r[2:], version))])
            settled = 0
            if deletes:  # joined: the pending row (or gone tombstone) becomes a join tombstone, updated in place
                rowid = self._rowids.__getitem__  # deletes are keys the preceding _lookup found
                for chunk in _padded_chunks([rowid(k) for k in deletes], 0):  # rowids start at 1
                    self._db.execute(_TOMBSTONE_SQL, chunk)
                if self._gone_keys:  # gone tombstones whose counterpart arrived late (not pending rows)
                    settled = sum(1 for k in deletes if k in self._gone_keys)
            if tombstones:  # joined without a stored row (pairs, same-step joins)
                self._insert_rows(_INSERT_DONE, [v for k in tombstones for v in (k, now)])
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "writing records") from exc
        self._pending += len(inserts) - (len(deletes) - settled)
        self._done_count += len(deletes) - settled + len(tombstones)
