"""SQLite join store in WAL mode: the durable default.

Durability: every step is one explicit transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) holding the records, the joins
and the changed aggregate totals; the processor acknowledges a request only after ``COMMIT`` returned. With
``journal_mode=WAL`` and ``synchronous=NORMAL``, ``COMMIT`` appends the transaction to the WAL file with a ``write()``
(no fsync): a committed transaction is in the operating system's page cache and survives the *process* being killed
(``kill -9``, OOM, crash) — the WAL is replayed by the next connection. What it does not survive is a power loss or
kernel crash before the OS flushes (the WAL is fsynced at checkpoints). ``synchronous=FULL`` closes that gap at the
cost of one fsync per commit; the processor's group commit keeps that cost per batch of requests, not per record.
Set ``OTEL_ML_SQLITE_SYNCHRONOUS=FULL`` to choose it.

Layout: ``pending`` (rowid = arrival order, unique key index) holds waiting predictions and labels and, with
``row`` NULL, the tombstones of joined keys (idempotency within the label window: a join is one in-place update);
``aggregates`` holds the cumulative metric totals; ``state`` small opaque blobs of the pipeline (the ROC-AUC windows,
in a fixed little-endian numpy layout, not marshal). Expiry removes the head of the table in rowid order.

Statements per group commit: lookups and tombstone updates are ``IN`` lists of exactly :data:`_CHUNK` values (the
last chunk padded with a repeated value), and pending rows and new tombstones are written by multi-row ``INSERT`` s of
:data:`_CHUNK` rows and then powers of two: a handful of SQL texts, each prepared once and kept in the connection's
statement cache (a variable-length ``IN`` list was a new statement to prepare per request, and ``executemany``
steps one statement per row).

A pending row's columns after the key and arrival time are stored as one ``marshal``-encoded tuple of str, float and
None: Python's sqlite3 binds each parameter separately, and 15 parameters cost ~6 µs per insert against ~0.7 µs for
encoding them into one blob (measured on this machine kind). ``marshal`` (not ``pickle``) cannot run code on load; the
database is the processor's own local state, written only by this module, and a row that fails to decode is a
corrupted store.

Row format across Python upgrades. ``marshal``'s format is not guaranteed across Python versions, so the encoding is
pinned and checked rather than trusted (a stable encoding was measured and rejected: JSON costs 3.8 µs to encode and
1.6 µs to decode a prediction row against 1.0 µs and 0.9 µs for marshal, i.e. ~15 % of the per-event budget at
50k events/s):

* rows are written with marshal format version :data:`MARSHAL_VERSION` (explicit, not the interpreter default), and
  ``meta.row_encoding`` names it; a store whose ``row_encoding`` this code does not know is refused;
* every Python ``major.minor`` that writes rows stores a *canary* in ``meta`` (``canary:<major>.<minor>``): the
  marshal bytes of :data:`CANARY`, a row-shaped tuple exercising every value kind rows hold (short/long ASCII,
  non-ASCII and empty strings, repeated objects, extreme and signed floats, None);
* at open, every canary written by another Python must decode to :data:`CANARY` under the running one. If one does
  not and pending rows exist, the store is refused with :class:`StoreFormatError` before any row is read or written
  (with no pending row left, the stale canary is just dropped).

Migration rule (also in the error message): with the *previous* image (the Python that wrote the store), stopped
processor, run ``python -m otel_ml.processor.store.migrate STORE``: it rewrites every pending row as a JSON array
(rows whose blob starts with ``[`` are read as JSON by every version of this module) and removes the canaries; then
start the new image on the store. Nothing is lost (aggregates and tombstones need no conversion). A store created
before these checks existed (no canary) is assumed to have been written by the running Python.
"""

from __future__ import annotations

import functools
import itertools
import json
import marshal
import os
import sqlite3
import sys
from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any

from otel_ml.errors import StoreError
from otel_ml.processor.aggregates import Key, decode_attrs, encode_attrs
from otel_ml.processor.records import ARRIVED, Row
from otel_ml.processor.store.base import DONE, BaseJoinStore

_CHUNK = 256
"""Keys per lookup / rowids per tombstone update, and rows per multi-row INSERT (fixed: the statements stay cached)."""
_LOOKUP_SQL = f"SELECT rowid, k, arrived, row FROM pending WHERE k IN ({','.join('?' * _CHUNK)})"
_TOMBSTONE_SQL = f"UPDATE pending SET row = NULL WHERE rowid IN ({','.join('?' * _CHUNK)})"
_INSERT_PENDING = ("INSERT INTO pending (k, arrived, row) VALUES ", "(?,?,?)")
_INSERT_DONE = ("INSERT OR IGNORE INTO pending (k, arrived, row) VALUES ", "(?,?,NULL)")
_ARRIVAL_KEY = itemgetter(ARRIVED, 0)
MARSHAL_VERSION = 4
"""marshal format of the rows (pinned: the interpreter default may change with Python)."""
ROW_ENCODING = f"marshal:{MARSHAL_VERSION}"
CANARY: tuple[Any, ...] = ("fraud", "2024-06-01", "binary", "region=eu,tier=gold", "fraud", "", "é€𝄞 ünïcode",
                              "x" * 300, None, 0.0, -0.0, -1.5, 1e308, 5e-324, 1700000000.123456, "1", None)
"""Row-shaped values covering every kind rows hold (repeated "fraud" exercises marshal's back-references)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (k TEXT NOT NULL UNIQUE, arrived REAL NOT NULL, row BLOB);
CREATE TABLE IF NOT EXISTS aggregates (
  metric TEXT NOT NULL, attrs TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (metric, attrs)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('schema', '3');
"""
_JSON_START = ord("[")
_loads = marshal.loads


class StoreFormatError(StoreError):
    """The store's row encoding cannot be read safely by this Python (see the module docstring)."""


def _python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _dumps(values: tuple[Any, ...]) -> bytes:
    return marshal.dumps(values, MARSHAL_VERSION)


def _padded_chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``values`` in chunks of exactly :data:`_CHUNK`, the last padded by repeating its first value.

    For the ``IN (...)`` statements: one SQL text whatever the count (prepared once), and a repeated value in an IN
    list changes nothing.
    """
    for i in range(0, len(values), _CHUNK):
        chunk = values[i:i + _CHUNK]
        if len(chunk) < _CHUNK:
            chunk = [*chunk, *[chunk[0]] * (_CHUNK - len(chunk))]
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


def _decode(k: str, arrived: float, blob: bytes) -> Row:
    if blob[0] == _JSON_START:  # rewritten by otel_ml.processor.store.migrate
        return (k, arrived, *json.loads(blob))
    return (k, arrived, *_loads(blob))


def check_format(db: sqlite3.Connection, path: object) -> None:
    """Refuse a store this Python cannot read identically; register this Python's canary (own transaction).

    Raises:
        StoreFormatError: Unknown ``row_encoding``, or a canary of another Python decodes differently here.
    """
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key = 'row_encoding' OR key LIKE 'canary:%'"))
    how = (f"Migrate with the Python that wrote it: stop this processor, run `python -m "
           f"otel_ml.processor.store.migrate {path}` with the previous processor image, then start this one again "
           f"(see otel_ml.processor.store.sqlite)")
    encoding = meta.pop("row_encoding", ROW_ENCODING)
    if encoding != ROW_ENCODING:
        raise StoreFormatError(f"join store {path} uses row encoding {encoding!r}; this processor reads "
                               f"{ROW_ENCODING!r}. {how}")
    mine = f"canary:{_python()}"
    for key, hexed in meta.items():
        try:
            ok = key == mine or tuple(_loads(bytes.fromhex(hexed))) == CANARY
        except (ValueError, EOFError, TypeError):
            ok = False
        if not ok and db.execute("SELECT 1 FROM pending WHERE row IS NOT NULL LIMIT 1").fetchone() is None:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))  # nothing that Python wrote is left to read
        elif not ok:
            raise StoreFormatError(f"join store {path} has rows written by Python {key.split(':', 1)[1]} whose "
                                   f"marshal encoding Python {_python()} does not read identically. {how}")
    if mine not in meta:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('row_encoding', ?), (?, ?)",
                   (ROW_ENCODING, mine, _dumps(CANARY).hex()))


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
        check_format(self._db, self.path)
        live, dead = self._db.execute(
            "SELECT count(row), count(*) - count(row) FROM pending").fetchone()
        self._pending, self._done_count = int(live), int(dead)
        self._live_head = 0  # every row with a smaller rowid is a tombstone (or gone)
        self._rowids: dict[str, int] = {}  # pending key -> rowid, of the last _lookup (joins update by rowid)
        self._in_txn = False
        self._saved = (self._pending, self._done_count, self._live_head)

    def _begin(self) -> None:
        if not self._in_txn:
            self._db.execute("BEGIN IMMEDIATE")
            self._in_txn = True
            self._saved = (self._pending, self._done_count, self._live_head)

    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:
        self._begin()
        out: dict[str, object] = {}
        db = self._db
        rowids = self._rowids = {}
        loads = _loads
        for chunk in _padded_chunks(keys):
            for rowid, k, arrived, blob in db.execute(_LOOKUP_SQL, chunk):
                if blob is None:
                    out[k] = DONE
                else:  # _decode inlined for marshal rows (one per join)
                    out[k] = (k, arrived, *loads(blob)) if blob[0] != _JSON_START else _decode(k, arrived, blob)
                    rowids[k] = rowid
        return out

    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], tombstones: Sequence[str], now: float) -> None:
        self._begin()
        if inserts:  # in arrival order (rowid order = expiry order); by key within an arrival (a request)
            dumps, version = marshal.dumps, MARSHAL_VERSION
            self._insert_rows(_INSERT_PENDING, [v for r in sorted(inserts, key=_ARRIVAL_KEY)
                                                for v in (r[0], r[ARRIVED], dumps(r[2:], version))])
        if deletes:  # joined: the pending row becomes its own tombstone (one in-place update, no index change)
            rowid = self._rowids.__getitem__  # deletes are keys the preceding _lookup found pending
            for chunk in _padded_chunks([rowid(k) for k in deletes]):
                self._db.execute(_TOMBSTONE_SQL, chunk)
        if tombstones:  # joined without a stored row (pairs, same-step joins)
            self._insert_rows(_INSERT_DONE, [v for k in tombstones for v in (k, now)])
        self._pending += len(inserts) - len(deletes)
        self._done_count += len(deletes) + len(tombstones)

    def _insert_rows(self, statement: tuple[str, str], params: list[Any]) -> None:
        """Run the multi-row INSERT ``statement`` (head, one row's placeholders) over the flat ``params``."""
        head, row = statement
        width = row.count("?")
        pos = 0
        for n in _insert_sizes(len(params) // width):
            self._db.execute(_values_sql(head, row, n), params[pos:pos + n * width])
            pos += n * width

    def _pop_oldest(self, limit: int, before: float | None) -> tuple[list[Row], int]:
        self._begin()
        db = self._db
        if before is None:  # eviction: the oldest pending records, tombstones skipped
            rows = db.execute("SELECT rowid, k, arrived, row FROM pending WHERE rowid >= ? AND row IS NOT NULL "
                              "ORDER BY rowid LIMIT ?", (self._live_head, limit)).fetchall()
        else:  # expiry: the head in rowid (= arrival) order, tombstones included
            head = db.execute("SELECT arrived FROM pending ORDER BY rowid LIMIT 1").fetchone()
            if head is None or head[0] >= before:
                return [], 0
            rows = db.execute("SELECT rowid, k, arrived, row FROM pending ORDER BY rowid LIMIT ?",
                              (limit,)).fetchall()
            rows = [r for r in rows if r[2] < before]
        if not rows:
            return [], 0
        db.executemany("DELETE FROM pending WHERE rowid = ?", [(r[0],) for r in rows])
        live = [_decode(k, arrived, blob) for _, k, arrived, blob in rows if blob is not None]
        self._pending -= len(live)
        self._done_count -= len(rows) - len(live)
        return live, len(rows)

    def _drop_done(self, before: float, keep_at_most: int) -> None:
        # expired tombstones already left with the head in _pop_oldest; here only the count bound
        over = self._done_count - keep_at_most
        if over > 0:
            self._begin()
            cur = self._db.execute(
                "DELETE FROM pending WHERE rowid IN (SELECT rowid FROM pending WHERE row IS NULL ORDER BY rowid "
                "LIMIT ?)", (over,))
            self._done_count -= max(cur.rowcount, 0)

    def pending(self) -> int:
        """Records waiting for their counterpart."""
        return self._pending

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record (amortized: scans only tombstones made since the last call)."""
        row = self._db.execute("SELECT rowid, arrived FROM pending WHERE rowid >= ? AND row IS NOT NULL "
                               "ORDER BY rowid LIMIT 1", (self._live_head,)).fetchone()
        if row is None:
            return None
        self._live_head = int(row[0])
        return float(row[1])

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
            self._pending, self._done_count, self._live_head = self._saved

    def load_aggregates(self) -> dict[Key, float]:
        """Persisted totals."""
        return {(name, decode_attrs(attrs)): value
                for name, attrs, value in self._db.execute("SELECT metric, attrs, value FROM aggregates")}

    def put_state(self, key: str, value: bytes) -> None:
        """Store a blob in the current transaction."""
        self._begin()
        self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))

    def load_state(self) -> dict[str, bytes]:
        """Persisted blobs."""
        return {k: bytes(v) for k, v in self._db.execute("SELECT key, value FROM state")}

    def close(self) -> None:
        """Roll back uncommitted work and close the database."""
        self.rollback()
        self._db.close()
