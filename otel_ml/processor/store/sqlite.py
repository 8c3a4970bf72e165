"""SQLite join store in WAL mode: the durable default.

Durability: every step is one explicit transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) holding the records, the joins
and the changed aggregate totals; the processor acknowledges a request only after ``COMMIT`` returned. With
``journal_mode=WAL`` and ``synchronous=NORMAL``, ``COMMIT`` appends the transaction to the WAL file with a ``write()``
(no fsync): a committed transaction is in the operating system's page cache and survives the *process* being killed
(``kill -9``, OOM, crash) — the WAL is replayed by the next connection. What it does not survive is a power loss or
kernel crash before the OS flushes (the WAL is fsynced at checkpoints). ``synchronous=FULL`` closes that gap at the
cost of one fsync per commit; the processor's group commit keeps that cost per batch of requests, not per record.
Set ``OTEL_ML_SQLITE_SYNCHRONOUS=FULL`` to choose it.

Layout: ``pending`` (rowid = arrival order, unique key index) holds waiting predictions and labels; ``done`` holds
tombstones of joined keys (idempotency within the label window); ``aggregates`` the cumulative metric totals.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from otel_ml.processor.aggregates import Key, decode_attrs, encode_attrs
from otel_ml.processor.records import ARRIVED, COLUMNS, Row
from otel_ml.processor.store.base import DONE, BaseJoinStore

_COLS = ", ".join(COLUMNS)
_PLACEHOLDERS = ", ".join("?" * len(COLUMNS))
_LOOKUP_CHUNK = 900
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
  k TEXT NOT NULL UNIQUE, arrived REAL NOT NULL, model TEXT NOT NULL, version TEXT, task TEXT, segment TEXT,
  p_str TEXT, p_num REAL, score REAL, p_aux TEXT, p_list TEXT, p_ts REAL,
  l_str TEXT, l_num REAL, l_list TEXT, l_rel TEXT, l_ts REAL
);
CREATE TABLE IF NOT EXISTS done (k TEXT NOT NULL UNIQUE, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS aggregates (
  metric TEXT NOT NULL, attrs TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (metric, attrs)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('schema', '1');
"""
assert _COLS.startswith("k, arrived")


class SqliteJoinStore(BaseJoinStore):
    """SQLite WAL backend (see the module docstring for durability)."""

    def __init__(self, path: str | Path, label_window: float, max_pending: int) -> None:
        super().__init__(label_window, max_pending)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute("PRAGMA journal_mode=WAL")
        sync = os.environ.get("OTEL_ML_SQLITE_SYNCHRONOUS", "NORMAL").upper()
        self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'FULL' else 'NORMAL'}")
        self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache: bounded RSS whatever the store size
        self._db.execute("PRAGMA temp_store=MEMORY")
        self._db.executescript(_SCHEMA)
        self._pending = int(self._db.execute("SELECT count(*) FROM pending").fetchone()[0])
        self._done_count = int(self._db.execute("SELECT count(*) FROM done").fetchone()[0])
        self._in_txn = False
        self._pending_at_begin = self._pending
        self._done_at_begin = self._done_count

    def _begin(self) -> None:
        if not self._in_txn:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_txn = True
            self._pending_at_begin = self._pending
            self._done_at_begin = self._done_count

    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:
        self._begin()
        out: dict[str, object] = {}
        db = self._db
        for i in range(0, len(keys), _LOOKUP_CHUNK):
            chunk = keys[i:i + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            for row in db.execute(f"SELECT {_COLS} FROM pending WHERE k IN ({marks})", chunk):
                out[row[0]] = row
            for (k,) in db.execute(f"SELECT k FROM done WHERE k IN ({marks})", chunk):
                out[k] = DONE
        return out

    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], done: Sequence[tuple[str, float]]) -> None:
        self._begin()
        db = self._db
        if inserts:
            db.executemany(f"INSERT INTO pending ({_COLS}) VALUES ({_PLACEHOLDERS})", inserts)
        if deletes:
            db.executemany("DELETE FROM pending WHERE k = ?", [(k,) for k in deletes])
        if done:
            db.executemany("INSERT OR IGNORE INTO done (k, at) VALUES (?, ?)", done)
        self._pending += len(inserts) - len(deletes)
        self._done_count += len(done)

    def _pop_oldest(self, limit: int, before: float | None) -> list[Row]:
        self._begin()
        rows = self._db.execute(f"SELECT rowid, {_COLS} FROM pending ORDER BY rowid LIMIT ?", (limit,)).fetchall()
        if before is not None:
            rows = [r for r in rows if r[1 + ARRIVED] < before]
        if not rows:
            return []
        self._db.executemany("DELETE FROM pending WHERE rowid = ?", [(r[0],) for r in rows])
        self._pending -= len(rows)
        return [tuple(r[1:]) for r in rows]

    def _drop_done(self, before: float, keep_at_most: int) -> None:
        self._begin()
        cur = self._db.execute("DELETE FROM done WHERE rowid IN (SELECT rowid FROM done WHERE at < ? ORDER BY rowid)",
                               (before,))
        self._done_count -= max(cur.rowcount, 0)
        over = self._done_count - keep_at_most
        if over > 0:
            cur = self._db.execute("DELETE FROM done WHERE rowid IN (SELECT rowid FROM done ORDER BY rowid LIMIT ?)",
                                   (over,))
            self._done_count -= max(cur.rowcount, 0)

    def pending(self) -> int:
        """Records waiting for their counterpart."""
        return self._pending

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record."""
        row = self._db.execute("SELECT arrived FROM pending ORDER BY rowid LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def commit(self, totals: Mapping[Key, float]) -> None:
        """Persist ``totals`` and commit (durable against process death once this returns)."""
        self._begin()
        if totals:
            self._db.executemany(
                "INSERT INTO aggregates (metric, attrs, value) VALUES (?, ?, ?) "
                "ON CONFLICT (metric, attrs) DO UPDATE SET value = excluded.value",
                [(name, encode_attrs(attrs), value) for (name, attrs), value in totals.items()])
        self._db.execute("COMMIT")
        self._in_txn = False

    def rollback(self) -> None:
        """Discard everything since the last commit."""
        if self._in_txn:
            self._db.execute("ROLLBACK")
            self._in_txn = False
            self._pending = self._pending_at_begin
            self._done_count = self._done_at_begin

    def load_aggregates(self) -> dict[Key, float]:
        """Persisted totals."""
        return {(name, decode_attrs(attrs)): value
                for name, attrs, value in self._db.execute("SELECT metric, attrs, value FROM aggregates")}

    def close(self) -> None:
        """Roll back uncommitted work and close the database."""
        self.rollback()
        self._db.close()
