"""Expiry, eviction and quarantine: removing the oldest records (the head of ``pending`` in rowid order), gone
tombstones, the tombstone count bound, and moving undecodable rows to the ``quarantine`` table.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from otel_ml.processor.records import Row
from otel_ml.processor.store.base import (
    Quarantined,
    gone_marker,
)
from otel_ml.processor.store.sqlite.connection import _STORAGE_ERRORS, SqliteConnection
from otel_ml.processor.store.sqlite.schema import _GONE_BY_BYTE, GONE_BLOBS, _decode, _Undecodable
from otel_ml.processor.store.sqlite.statements import _INSERT_GONE

QUARANTINE_MAX_ROWS: Final = 10_000
"""Quarantined rows kept (the oldest beyond are deleted; every one was counted and logged)."""


class SqliteExpiry(SqliteConnection):
    """Expiry, eviction and quarantine of :class:`~otel_ml.processor.store.sqlite.SqliteJoinStore`."""

    def _pop_oldest(self, limit: int, before: float | None) -> tuple[list[Row], int]:
        self._begin()
        db = self._db
        try:
            if before is None:  # eviction: the oldest pending records, tombstones skipped
                rows = db.execute("SELECT rowid, k, arrived, row FROM pending WHERE rowid >= ? AND length(row) > 1 "
                                  "ORDER BY rowid LIMIT ?", (self._live_head, limit)).fetchall()
            else:  # expiry: the head in rowid (= arrival) order, tombstones included
                head = db.execute("SELECT arrived FROM pending ORDER BY rowid LIMIT 1").fetchone()
                if head is None or not isinstance(head[0], float | int) or head[0] >= before:
                    if head is not None and not isinstance(head[0], float | int):
                        rows = db.execute("SELECT rowid, k, arrived, row FROM pending ORDER BY rowid LIMIT 1")\
                            .fetchall()  # an undecodable arrival time at the head: quarantined below
                    else:
                        return [], 0
                else:
                    rows = db.execute("SELECT rowid, k, arrived, row FROM pending ORDER BY rowid LIMIT ?",
                                      (limit,)).fetchall()
                    rows = [r for r in rows if not isinstance(r[2], float | int) or r[2] < before]
            if not rows:
                return [], 0
            self._writable()
            db.executemany("DELETE FROM pending WHERE rowid = ?", [(r[0],) for r in rows])
            live: list[Row] = []
            bad: list[tuple[int, str, float, bytes, str]] = []
            dead = 0
            for rowid, k, arrived, blob in rows:
                if blob is None or (len(blob) == 1 and blob[0] in _GONE_BY_BYTE):
                    dead += 1
                    continue
                try:
                    if not isinstance(arrived, float | int):
                        raise _Undecodable(f"arrival time is a {type(arrived).__name__}")
                    live.append(_decode(k, float(arrived), blob))
                except _Undecodable as exc:
                    bad.append((rowid, k, arrived, blob, str(exc) if len(blob) > 1 else "unknown tombstone"))
            if bad:
                self._quarantine(bad, delete=False)
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "removing the oldest records") from exc
        self._pending -= len(live)
        self._done_count -= dead
        return live, len(rows)

    def _mark_gone(self, rows: Sequence[Row], now: float) -> None:
        if not rows:
            return
        self._begin()
        try:
            self._writable()
            self._insert_rows(_INSERT_GONE, [v for r in rows for v in (r[0], now, GONE_BLOBS[gone_marker(r)])])
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "leaving tombstones") from exc
        self._done_count += len(rows)

    def _drop_done(self, before: float, keep_at_most: int) -> None:
        # expired tombstones already left with the head in _pop_oldest; here only the count bound
        over = self._done_count - keep_at_most
        if over > 0:
            self._begin()
            try:
                self._writable()
                cur = self._db.execute(
                    "DELETE FROM pending WHERE rowid IN (SELECT rowid FROM pending WHERE length(row) <= 1 "
                    "OR row IS NULL ORDER BY rowid LIMIT ?)", (over,))
            except _STORAGE_ERRORS as exc:
                raise self._fail(exc, "dropping tombstones") from exc
            self._done_count -= max(cur.rowcount, 0)

    def _quarantine(self, rows: Sequence[tuple[int, str, Any, bytes, str]], *, delete: bool) -> None:
        """Move undecodable rows aside (in the open transaction): quarantine table, counters, take_quarantined."""
        self._writable()
        if delete:
            self._db.executemany("DELETE FROM pending WHERE rowid = ?", [(r[0],) for r in rows])
        at = time.time()
        self._db.executemany("INSERT INTO quarantine (k, raw, reason, at) VALUES (?, ?, ?, ?)",
                             [(k, blob if isinstance(blob, bytes) else repr(blob).encode(), reason, at)
                              for _, k, _, blob, reason in rows])
        self._db.execute("DELETE FROM quarantine WHERE rowid <= (SELECT max(rowid) FROM quarantine) - ?",
                         (QUARANTINE_MAX_ROWS,))
        for _, k, _, blob, reason in rows:
            if isinstance(blob, bytes) and len(blob) > 1:
                self._pending -= 1
            else:
                self._done_count -= 1
            self._quarantined.append(Quarantined(str(k), reason))

    def pending(self) -> int:
        """Records waiting for their counterpart."""
        return self._pending

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record (amortized: scans only tombstones made since the last call)."""
        self._ensure_open()
        try:
            row = self._db.execute("SELECT rowid, arrived FROM pending WHERE rowid >= ? AND length(row) > 1 "
                                   "ORDER BY rowid LIMIT 1", (self._live_head,)).fetchone()
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "reading the oldest record") from exc
        if row is None or not isinstance(row[1], float | int):
            return None
        self._live_head = int(row[0])
        return float(row[1])
