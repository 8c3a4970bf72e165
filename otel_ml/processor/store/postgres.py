"""PostgreSQL join store: one database shared by every processor replica, so any replica may take any record.

With SQLite, a prediction and its label must reach the same replica; every change of the replica set strands the
joins pending on the wrong one. Here the pending records live in one PostgreSQL database: replicas are stateless
(apart from their own cumulative counters, kept under their ``instance_id``), the collector may spread records
over them in any way (round robin, ``load_balancing``), and a replica that dies loses nothing that was acknowledged.

Configuration (``store:``)::

    store:
      backend: postgres
      dsn: "postgresql://otelml:${env:OTEL_ML_PG_PASSWORD}@db.internal:5432/otelml?sslmode=verify-full"
      schema: otel_ml          # created if missing; every table lives there

Tables (schema :data:`SCHEMA_VERSION`, migrations in :data:`MIGRATIONS`):

* ``joins``: ONE row per join key (model + prediction id). A pending prediction has ``pred`` set, a pending label
  ``label``; when the second half arrives the row becomes a *tombstone* in place (``joined`` = time of the join,
  both payloads cleared, a HOT update: no index changes, as long as the page has room: the table's fillfactor is
  70). Tombstones make re-sent records duplicates for the label
  window (and at most ``max_pending`` of them are kept, like the SQLite store). Expiry is by ``arrived`` (the first
  half's arrival), through the ``joins_arrived`` index.
* ``aggregates`` and ``state``: the cumulative metric totals and state blobs (ROC-AUC windows) of each replica,
  keyed by its ``instance_id``: a replica's counters commit in the same transaction as its joins, and a replica
  restarted with the same id continues its series.
* ``counts``: the number of pending rows and tombstones as per-replica deltas (the sum over rows is the store's
  count; a replica only ever updates its own row, so the count costs no cross-replica contention).
* ``instances`` (replicas seen, with their last heartbeat), ``meta`` (row-encoding canaries), ``schema_migrations``.

How a join happens exactly once, whatever replicas see the two halves, in any order, at the same moment. Each group
commit is one READ COMMITTED transaction:

1. ``INSERT ... SELECT FROM unnest(...) ORDER BY k ON CONFLICT (k) DO UPDATE ... WHERE false RETURNING k`` writes
   every key of the group that does not exist yet (as the join logic would if the store held nothing for it: a
   pending row, or a tombstone for a pair or a prediction and label in the same group) and *locks* every key that
   exists (the PostgreSQL manual: with ``ON CONFLICT DO UPDATE`` "all rows will be locked" even where the ``WHERE``
   is false). A key being inserted by another uncommitted transaction makes this statement wait for it: the second
   replica then sees the first one's row. Keys are processed in key order, so two replicas lock in the same order
   and cannot deadlock on the join rows.
2. ``SELECT`` the locked existing rows (a new statement: its snapshot includes every commit it waited for). Nobody
   else can change them until this transaction ends.
3. The shared join logic (:class:`~otel_ml.processor.store.base._Joins`) decides per key: join, duplicate, or (for
   the keys inserted in 1) exactly what was already written. Existing pending rows that joined become tombstones
   with one ``UPDATE``.
4. ``commit(totals)`` writes the replica's aggregate totals and count deltas, then ``COMMIT``: the join, its
   counters and the tombstone are one atomic outcome. The replica that completes a join counts it; a re-sent record
   meets a tombstone (or its own pending half) and counts nothing.

Read-ahead (:meth:`PostgresJoinStore.prefetch`, called by the pipeline once a step's joins are decided): steps 1 and
2 of the NEXT group run on the replica's second connection, in its own transaction, while this step computes its
metrics and commits; the next step then takes that connection as its own (the transaction it continues is the one
that holds the locks). The keys this step's transaction holds go in a separate, second statement, which waits for
this step's ``COMMIT`` (or rollback) exactly as another replica's would, so the state it reads is the committed one.
After its reads start, a step takes no further row lock that could wait (the leader's sweep and eviction use
``SKIP LOCKED``), so the two connections of a replica cannot wait on each other in a cycle. A rollback ends this
step's transaction first, then the read-ahead's; a read-ahead that failed, or of other requests than the next
step's, is rolled back and the step reads for itself (``tests/processor/test_postgres_store.py``:
``test_read_ahead_joins_each_key_exactly_once``).

Expiry, the tombstone bound and the shared store's gauges are the work of one *leader* replica at a time (the
holder
of a session-level advisory lock; another replica takes over within ``store.expire_interval`` once the leader's
connection is gone). Expired and evicted rows are removed with ``FOR UPDATE SKIP LOCKED`` (never waiting on a row a
replica is joining) and counted by the replica that removed them. Eviction (more than ``max_pending`` pending) is
done by whichever replica's step crossed the bound, under a transaction-level advisory lock taken before it
re-reads the count: the overage is evicted once, not once per replica.

Failures. Every PostgreSQL error of a step raises :class:`PostgresStoreError` (a ``StoreError``): the pipeline
rolls back and the receivers answer ``UNAVAILABLE`` / 503 (retryable), so the collector's persistent queue keeps
the data. A broken connection (server restarted, network cut, failover) is dropped and opened again by the next
step. When a connection breaks *during* ``COMMIT`` its outcome is unknown: :meth:`PostgresJoinStore.needs_resync`
then tells the pipeline to reload this replica's totals from the database before its next step (the re-sent
records are duplicates if the commit did happen, and the totals include their counts). A read-only transaction
(``default_transaction_read_only``, a standby after a failover) also drops the connection, so that a multi-host DSN
with ``target_session_attrs=read-write`` finds the new primary. Deadlocks and serialization failures (only
possible when a DBA forces a stricter isolation level) are marked ``retryable``. The first failure of an episode
is logged (ERROR, with its kind), later ones are only counted, the recovery is logged once (WARNING). Session
settings bound every wait:
``statement_timeout`` :data:`STATEMENT_TIMEOUT`, ``lock_timeout`` :data:`LOCK_TIMEOUT`,
``idle_in_transaction_session_timeout`` :data:`IDLE_TIMEOUT` (a hung replica cannot hold row locks for long), and
``connect_timeout`` 5 s unless the DSN sets one.

Privileges: none beyond owning the schema (or ``CREATE`` on the database to create it). Migrations are versioned
(``schema_migrations``), run at start-up inside one transaction under ``pg_advisory_xact_lock``, so replicas
starting together apply each one once; a database migrated by a newer processor is refused with a clear error.
Each replica holds two connections for its single writer thread (the current step's and the read-ahead's; no pool
to size), one for the publisher of gone replicas' totals (:class:`ReplicaAdopter`) and a short-lived one during
start-up; the leader's advisory lock is session-level, so use session pooling (or none) in PgBouncer.

Row payloads are marshal-encoded tuples as in the SQLite store (the same :data:`MARSHAL_VERSION` pin and per-Python
canaries in ``meta``: a replica whose Python decodes another version's canary differently refuses to start while
rows are pending).
"""

from __future__ import annotations

import logging
import marshal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, Final

from otel_ml.processor.aggregates import Key, decode_attrs, encode_attrs
from otel_ml.processor.config import dsn_without_password
from otel_ml.processor.records import ARRIVED, COLUMNS, LABEL_START, SEP, TASK, Row
from otel_ml.processor.store.base import (
    DONE,
    GONE_LABEL,
    GONE_PREDICTION,
    BaseJoinStore,
    IngestResult,
    Quarantined,
    StorageError,
    _Joins,
)
from otel_ml.processor.store.sqlite import CANARY, MARSHAL_VERSION, ROW_ENCODING, StoreFormatError, _python
from otel_ml.semconv.attributes import StoreErrorReason as Kind

if TYPE_CHECKING:
    import psycopg

_logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 5
STATEMENT_TIMEOUT: Final = "20s"
DEFAULT_LOCK_TIMEOUT_S: Final = 5.0
IDLE_TIMEOUT: Final = "60s"
CONNECT_TIMEOUT_S: Final = 5
REOPEN_BACKOFF_S: Final = 0.5
"""After a failed connection attempt, steps fail at once (``unavailable``) for this long before the next attempt."""
HEARTBEAT_S: Final = 10.0
"""How often a replica refreshes its ``instances.last_seen`` at most (more often with a short ``replica_timeout``:
a third of it)."""
_LOCK_CLASS_MIGRATE: Final = 0x6F6D0001
_LOCK_CLASS_LEADER: Final = 0x6F6D0002
_LOCK_CLASS_EVICT: Final = 0x6F6D0003
_LOCK_CLASS_ADOPT: Final = 0x6F6D0004
"""First key of the advisory locks (the second is ``hashtext(schema)``: one lock set per schema)."""
_CHUNK: Final = 1000
_NO_LABEL: Final = (None,) * (len(COLUMNS) - LABEL_START)  # the label columns of a pending prediction
_LABEL_PAD: Final = (None,) * (LABEL_START - 3)  # VERSION .. P_TS of a pending label (MODEL comes from the key)

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


def _register_arrays(conn: psycopg.Connection[Any]) -> None:
    from psycopg.adapt import Dumper

    class _ArrayDumper(Dumper):
        format = _psycopg().pq.Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return obj  # type: ignore[no-any-return]

    for cls in (_TextArray, _Float8Array, _ByteaArray, _Int2Array):
        conn.adapters.register_dumper(cls, type(f"{cls.__name__}Dumper", (_ArrayDumper,), {"oid": cls.oid}))

MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (1, "join rows, per-instance aggregates/state/counts, instances, meta", """
CREATE TABLE {s}.joins (
  k       text PRIMARY KEY,            -- model U+001F prediction id
  arrived double precision NOT NULL,   -- processor time the first half arrived (expiry order)
  joined  double precision,            -- NULL: pending; else time of the join (a tombstone)
  pred    bytea,                       -- pending prediction half (marshal), NULL in a tombstone
  label   bytea                        -- pending label half (marshal), NULL in a tombstone
) WITH (fillfactor = 85);              -- room for the in-place (HOT) update that turns a row into a tombstone
CREATE INDEX joins_arrived ON {s}.joins (arrived);
CREATE TABLE {s}.aggregates (
  instance text NOT NULL, metric text NOT NULL, attrs text NOT NULL, value double precision NOT NULL,
  PRIMARY KEY (instance, metric, attrs));
CREATE TABLE {s}.state (instance text NOT NULL, key text NOT NULL, value bytea NOT NULL,
  PRIMARY KEY (instance, key));
CREATE TABLE {s}.counts (instance text PRIMARY KEY, pending bigint NOT NULL DEFAULT 0,
  done bigint NOT NULL DEFAULT 0);
CREATE TABLE {s}.instances (instance text PRIMARY KEY, host text NOT NULL, first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL);
CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL);
"""),
    (2, "instances.retired_at: replicas gone whose last totals were published by another", """
ALTER TABLE {s}.instances ADD COLUMN retired_at timestamptz;
"""),
    (3, "gone tombstones (joins.gone) and the quarantine of undecodable rows", """
ALTER TABLE {s}.joins ADD COLUMN gone smallint;  -- tombstone of a half that left unjoined: 1 prediction, 2 label
CREATE TABLE {s}.quarantine (k text NOT NULL, pred bytea, label bytea, reason text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(), instance text NOT NULL);
"""),
    (4, "joins fillfactor 70: room on the page for the update that turns a pending row into a tombstone", """
-- with room left on its page the new version stays there (a HOT update: no index entries). Measured on groups of
-- 4000 events: 42 % of these updates were HOT at fillfactor 85, 99.6 % at 70 (the UPDATE's WAL -63 %). Applies to
-- pages written from now on; no rewrite.
ALTER TABLE {s}.joins SET (fillfactor = 70);
"""),
    (5, 'join keys compared byte by byte (COLLATE "C"): no locale collation in the primary key', """
ALTER TABLE {s}.joins ALTER COLUMN k TYPE text COLLATE "C";  -- rebuilds the primary key (the heap is not rewritten)
"""),
)
"""Versioned migrations ``(version, description, SQL with {s} = quoted schema)``; append only, never edit."""


class PostgresStoreError(StorageError):
    """A PostgreSQL failure of the join store: the step was not committed (or its outcome is being re-synced).

    Attributes:
        kind: :class:`~otel_ml.semconv.attributes.StoreErrorReason` value (``unavailable``, ``readonly``, ``full``,
            ``locked``, ``nomem``, ``io``, ``corrupt``, ``other``).
        retryable: A transient conflict (deadlock, serialization failure): running the step again may succeed.
    """

    def __init__(self, kind: str, message: str, retryable: bool = False) -> None:
        super().__init__(kind, message)
        self.retryable = retryable


def error_kind(exc: BaseException) -> str:
    """The :class:`~otel_ml.semconv.attributes.StoreErrorReason` of a psycopg error (by SQLSTATE class)."""
    pg = _psycopg()
    errors = pg.errors
    if isinstance(exc, errors.ReadOnlySqlTransaction):
        return Kind.READONLY
    if isinstance(exc, errors.DiskFull):
        return Kind.FULL
    if isinstance(exc, errors.OutOfMemory):
        return Kind.NOMEM
    if isinstance(exc, errors.LockNotAvailable | errors.DeadlockDetected | errors.SerializationFailure):
        return Kind.LOCKED
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if sqlstate.startswith("58"):  # system error: I/O
        return Kind.IO
    if sqlstate.startswith("XX"):  # data_corrupted, index_corrupted
        return Kind.CORRUPT
    if isinstance(exc, pg.OperationalError):  # connection lost/refused, server shutting down, statement timeout
        return Kind.UNAVAILABLE
    return Kind.OTHER


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the processor extra installs it
        raise PostgresStoreError(Kind.OTHER, "store.backend postgres needs psycopg 3: pip install "
                                             "'otel-ml[processor]'") from exc
    return psycopg


def connect(dsn: str, application_name: str, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> psycopg.Connection[Any]:
    """A connection with the store's session settings (``connect_timeout`` defaulted, bounded waits).

    Raises:
        PostgresStoreError: The database cannot be reached or refuses the login (message without the password).
    """
    psycopg = _psycopg()
    try:
        params = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise PostgresStoreError(Kind.OTHER, f"store.dsn is not a valid PostgreSQL DSN "
                                             f"({dsn_without_password(dsn)})") from exc
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    params.setdefault("application_name", application_name)
    try:
        conn = psycopg.connect(**params, autocommit=True)
        _register_arrays(conn)
        conn.execute(f"SET statement_timeout = '{STATEMENT_TIMEOUT}'; "
                     f"SET lock_timeout = '{max(int(lock_timeout * 1000), 1)}ms'; "
                     f"SET idle_in_transaction_session_timeout = '{IDLE_TIMEOUT}'")
        conn.autocommit = False
    except psycopg.Error as exc:
        kind = Kind.UNAVAILABLE if isinstance(exc, psycopg.OperationalError) else error_kind(exc)
        raise PostgresStoreError(kind, f"cannot connect to PostgreSQL at {dsn_without_password(dsn)}: "
                                       f"{str(exc).strip() or type(exc).__name__}") from exc
    return conn  # type: ignore[no-any-return]


def migrate(conn: psycopg.Connection[Any], schema: str, instance: str = "") -> int:
    """Bring ``schema`` to :data:`SCHEMA_VERSION` (one transaction, under an advisory lock); returns the version.

    Safe to run from several replicas at once: the second waits for the first and finds nothing left to do.

    Raises:
        PostgresStoreError: The schema was migrated by a newer processor, or a migration failed (nothing applied).
    """
    psycopg = _psycopg()
    s = _quote(schema)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS_MIGRATE, schema))
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
                conn.execute(f"CREATE SCHEMA {s}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations (version integer PRIMARY KEY, "
                         "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
                         "applied_by text NOT NULL)")
            row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {s}.schema_migrations").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise PostgresStoreError(
                    Kind.OTHER, f"schema {schema} is at version {current}, newer than this processor's "
                                f"{SCHEMA_VERSION}: run a processor image at least as new as the one that migrated it")
            for version, description, sql in MIGRATIONS:
                if version > current:
                    conn.execute(sql.format(s=s))
                    conn.execute(f"INSERT INTO {s}.schema_migrations (version, description, applied_by) "
                                 "VALUES (%s, %s, %s)", (version, description, instance or socket.gethostname()))
                    _logger.info("join store schema %s migrated to version %d (%s)", schema, version, description)
    except psycopg.Error as exc:
        raise PostgresStoreError(error_kind(exc), f"cannot migrate the join store schema {schema}: "
                                                  f"{str(exc).strip()}") from exc
    return SCHEMA_VERSION


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _close(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # already broken
            pass


class _Prefetch:
    """Steps 1-2 of a group started ahead (:meth:`PostgresJoinStore.prefetch`) on its own connection."""

    __slots__ = ("batches", "conn", "future", "plan")

    def __init__(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], plan: _Plan,
                 future: Future[tuple[set[str], list[tuple[Any, ...]]]], conn: psycopg.Connection[Any]) -> None:
        self.batches, self.plan, self.future, self.conn = batches, plan, future, conn

    def matches(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]]) -> bool:
        """Whether ``batches`` hold the very same row lists."""
        return len(batches) == len(self.batches) and all(
            p is q and l_ is m for (p, l_), (q, m) in zip(batches, self.batches, strict=True))


class _Plan:
    """What a group's records write for each key if the store held nothing for it (the join logic over an empty
    state): pending rows (``ks[:n_new]``) and tombstones of records joined within the group (``ks[n_new:]``)."""

    __slots__ = ("arrivals", "joined_at", "ks", "labels", "n_new", "preds")

    def __init__(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], now: float) -> None:
        first = _Joins({})
        for predictions, labels in batches:
            first.batch(predictions, labels)
        new_rows = list(first.inserts.values())
        n_tomb = len(first.tombstones)
        self.n_new = len(new_rows)
        self.ks: list[str] = [r[0] for r in new_rows] + first.tombstones
        self.arrivals: list[float] = [r[ARRIVED] for r in new_rows] + [now] * n_tomb
        self.joined_at: list[float | None] = [None] * len(new_rows) + [now] * n_tomb
        halves = [PostgresJoinStore._halves(r) for r in new_rows]
        self.preds: list[bytes | None] = [h[0] for h in halves] + [None] * n_tomb
        self.labels: list[bytes | None] = [h[1] for h in halves] + [None] * n_tomb

    def params(self, pick: Sequence[int]) -> tuple[_Array, ...]:
        """Parameters of the insert-or-lock statement for the keys at the indexes ``pick``."""
        if len(pick) == len(self.ks):
            return (_texts(self.ks), _floats(self.arrivals), _floats(self.joined_at), _byteas(self.preds),
                    _byteas(self.labels))
        return (_texts([self.ks[i] for i in pick]), _floats([self.arrivals[i] for i in pick]),
                _floats([self.joined_at[i] for i in pick]), _byteas([self.preds[i] for i in pick]),
                _byteas([self.labels[i] for i in pick]))


class PostgresJoinStore(BaseJoinStore):
    """The shared backend (see the module docstring). One instance per replica; not thread-safe (one writer)."""

    def __init__(self, dsn: str, label_window: float, max_pending: int, instance_id: str,
                 schema: str = "otel_ml", clock: Callable[[], float] = time.time,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S, replica_timeout: float = 300.0) -> None:
        super().__init__(label_window, max_pending)
        self.heartbeat = min(HEARTBEAT_S, replica_timeout / 3)  # a live replica is never older than the timeout
        self.dsn = dsn
        self.lock_timeout = lock_timeout
        self.schema = schema
        self.instance_id = instance_id
        self.clock = clock
        self._app = f"otel-ml-processor {instance_id}"[:63]
        s = self._s = _quote(schema)
        self._sql_insert = (
            f"INSERT INTO {s}.joins AS t (k, arrived, joined, pred, label) "
            "SELECT * FROM unnest(%b::text[], %b::float8[], %b::float8[], %b::bytea[], %b::bytea[]) "
            "AS u(k, arrived, joined, pred, label) ORDER BY k COLLATE \"C\" "
            "ON CONFLICT (k) DO UPDATE SET arrived = t.arrived WHERE false RETURNING k")
        self._sql_locked = f"SELECT k, arrived, joined, pred, label, gone FROM {s}.joins WHERE k = ANY(%b::text[])"
        self._sql_existing = self._sql_locked + " AND xmin <> pg_current_xact_id()::xid"  # not inserted by us
        self._sql_tombstone = (f"UPDATE {s}.joins SET joined = %b, pred = NULL, label = NULL, gone = NULL "
                               "WHERE k = ANY(%b::text[])")
        self._psycopg = _psycopg()
        self._conn: psycopg.Connection[Any] | None = None
        self._dpending = 0  # this transaction's changes of the pending / tombstone counts
        self._ddone = 0
        self._head = float("-inf")  # no pending row arrived before this (oldest_pending_arrival's cursor)
        self._saved_head = self._head
        self._leader_conn: psycopg.Connection[Any] | None = None  # the session holding the sweep's advisory lock
        self._spare: psycopg.Connection[Any] | None = None  # the second connection: the next group's reads (prefetch)
        self._pool: ThreadPoolExecutor | None = None
        self._prefetched: _Prefetch | None = None
        self._txn_keys: set[str] = set()  # join keys this transaction inserted or locked
        self._now = 0.0  # the step's time, for the gone tombstones _pop_oldest leaves
        self._connect_failed_at = float("-inf")
        self._failing: str | None = None  # the kind of the failure episode under way (logged once), None: healthy
        self._failures = 0
        self._last_heartbeat = 0.0
        self._pending_base: int | None = None  # committed pending count (every replica) at the last read
        self._pending_read_at = 0.0
        self._wrote = False
        self._deferred: list[tuple[str, tuple[Any, ...]]] = []
        conn = connect(dsn, self._app, lock_timeout)
        try:
            migrate(conn, schema, instance_id)
            self._check_format(conn)
            conn.commit()
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # --- connection and errors -------------------------------------------------------------------------------------
    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            since = time.monotonic() - self._connect_failed_at
            if since < REOPEN_BACKOFF_S:
                raise PostgresStoreError(Kind.UNAVAILABLE, f"not reconnected: the last attempt failed {since:.2f} s "
                                                           f"ago ({dsn_without_password(self.dsn)})")
            try:
                self._conn = connect(self.dsn, self._app, self.lock_timeout)
            except PostgresStoreError:
                self._connect_failed_at = time.monotonic()
                raise
            self._head = self._saved_head = float("-inf")
            _logger.info("join store: reconnected to PostgreSQL (%s)", dsn_without_password(self.dsn))
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        _close(conn)
        if conn is self._leader_conn:
            self._leader_conn = None

    @contextmanager
    def _guard(self, what: str, committing: bool = False) -> Iterator[None]:
        """Turn PostgreSQL errors into :class:`PostgresStoreError` once the store is back in a known state.

        The transaction is rolled back (or its connection dropped), this transaction's counters are restored, the
        failure is counted once by kind, and only then is the error raised. OperationalError (connection lost,
        server shutting down, statement timeout, disk full...) and read-only errors drop the connection: the next
        step opens a new one (cheap, and it finds the new primary after a failover).
        """
        pg = self._psycopg
        try:
            yield
        except PostgresStoreError as exc:  # raised by connect() / the reconnect back-off
            self._reset()
            self._count_error(exc.kind)
            self._note_failure(exc)
            raise
        except pg.Error as exc:
            kind = error_kind(exc)
            closed = self._conn is None or self._conn.closed
            if closed or kind == Kind.READONLY or isinstance(exc, pg.OperationalError):
                if committing and kind != Kind.READONLY:
                    self._needs_resync = True  # the COMMIT may or may not have happened
                self._drop()
            self._reset()
            self._count_error(kind)
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            error = PostgresStoreError(kind, f"{what} failed: {detail}",
                                       retryable=isinstance(exc, pg.errors.SerializationFailure
                                                            | pg.errors.DeadlockDetected))
            if not error.retryable:
                self._note_failure(error)
            raise error from exc

    def _note_failure(self, error: PostgresStoreError) -> None:
        """Log the first failure of an episode (and a change of kind); later ones are counted, not logged."""
        self._failures += 1
        if self._failing != error.kind:
            _logger.error("%s; requests are answered with a retryable code until it recovers", error)
            self._failing = error.kind

    def _healthy(self) -> None:
        """A commit went through: end the failure episode (logged with how many operations failed)."""
        if self._failing is not None:
            _logger.warning("join store recovered after %d failed operations (last: %s)", self._failures,
                            self._failing)
            self._failing, self._failures = None, 0

    def _reset(self) -> None:
        """Roll back (never raising) and restore this transaction's in-memory state."""
        conn = self._conn
        if conn is not None and not conn.closed:
            try:
                conn.rollback()
            except Exception:
                self._drop()
        self._wrote = False
        self._deferred.clear()
        self._txn_keys.clear()
        self._dpending = self._ddone = 0
        self._head = self._saved_head
        self._quarantined.clear()
        self._discard_prefetch()

    def _flush(self) -> None:
        """Run the statements deferred to the commit now (a read of this transaction depends on them)."""
        if self._deferred:
            db = self._db()
            for sql, params in self._deferred:
                db.execute(sql, params)
            self._deferred.clear()

    # --- encoding --------------------------------------------------------------------------------------------------
    @staticmethod
    def _halves(row: Row) -> tuple[bytes | None, bytes | None]:
        """Payloads of a pending row: a prediction's columns after the key and arrival, or a label's half."""
        if row[TASK] is not None:
            return marshal.dumps(row[2:LABEL_START], MARSHAL_VERSION), None
        return None, marshal.dumps(row[LABEL_START:], MARSHAL_VERSION)

    @staticmethod
    def _row(k: str, arrived: float, pred: bytes | None, label: bytes | None) -> Row:
        """The pending row of a stored payload.

        Raises:
            ValueError: The payload cannot be decoded into a row (a corrupted row: the caller quarantines it).
        """
        try:
            half = marshal.loads(pred if pred is not None else label)  # type: ignore[arg-type]
        except (ValueError, EOFError, TypeError) as exc:
            raise ValueError(f"undecodable payload: {exc}") from exc
        if pred is not None:
            if type(half) is not tuple or len(half) != LABEL_START - 2:
                raise ValueError(f"not a prediction half: {type(half).__name__}")
            return (k, arrived, *half, *_NO_LABEL)
        if type(half) is not tuple or len(half) != len(_NO_LABEL) or SEP not in k:
            raise ValueError(f"not a label half: {type(half).__name__}")
        return (k, arrived, k.split(SEP, 1)[0], *_LABEL_PAD, *half)

    def _quarantine(self, bad: list[tuple[str, bytes | None, bytes | None, str]]) -> None:
        """Move undecodable rows ``(key, pred, label, reason)`` from ``joins`` to ``quarantine`` (this transaction)."""
        s = self._s
        db = self._db()
        db.execute(f"DELETE FROM {s}.joins WHERE k = ANY(%b::text[])", ([b[0] for b in bad],))
        db.execute(f"INSERT INTO {s}.quarantine (k, pred, label, reason, instance) SELECT *, %b FROM "
                   "unnest(%b::text[], %b::bytea[], %b::bytea[], %b::text[])",
                   (self.instance_id, [b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad],
                    [b[3] for b in bad]))
        for key, _, _, reason in bad:
            self._quarantined.append(Quarantined(key, reason))
            _logger.warning("join store: quarantined the undecodable row of %r (%s)", key, reason)

    def _check_format(self, conn: psycopg.Connection[Any]) -> None:
        meta = dict(conn.execute(f"SELECT key, value FROM {self._s}.meta WHERE key = 'row_encoding' "
                                 "OR key LIKE 'canary:%%'").fetchall())
        encoding = meta.pop("row_encoding", ROW_ENCODING)
        if encoding != ROW_ENCODING:
            raise StoreFormatError(f"join store schema {self.schema} uses row encoding {encoding!r}; this processor "
                                   f"reads {ROW_ENCODING!r}")
        mine = f"canary:{_python()}"
        for key, hexed in meta.items():
            try:
                ok = key == mine or tuple(marshal.loads(bytes.fromhex(hexed))) == CANARY
            except (ValueError, EOFError, TypeError):
                ok = False
            if not ok and conn.execute(f"SELECT 1 FROM {self._s}.joins WHERE joined IS NULL LIMIT 1").fetchone():
                raise StoreFormatError(
                    f"join store schema {self.schema} has rows written by Python {key.split(':', 1)[1]} whose marshal "
                    f"encoding Python {_python()} does not read identically: run replicas of the previous image "
                    f"until no row is pending (ml_processor_store_pending), or roll back")
        conn.execute(f"INSERT INTO {self._s}.meta VALUES ('row_encoding', %s), (%s, %s) ON CONFLICT (key) DO NOTHING",
                     (ROW_ENCODING, mine, marshal.dumps(CANARY, MARSHAL_VERSION).hex()))

    # --- join ------------------------------------------------------------------------------------------------------
    def ingest_many(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], now: float) -> list[IngestResult]:
        """See :class:`~otel_ml.processor.store.base.JoinStore` and the module docstring (steps 1-3)."""
        fresh = not self._wrote  # nothing written by this transaction yet: one round trip suffices (see _fetch)
        ahead = self._take_prefetched(batches, fresh)
        self._wrote = True
        with self._guard("ingest"):
            if ahead is not None:  # this group's reads ran on the spare connection, now this transaction's
                inserted, stored = ahead.future.result()
                return self._decide(batches, ahead.plan, inserted, stored, now)
            db = self._db()
            self._flush()
            plan = _Plan(batches, now)
            if not plan.ks:
                return [IngestResult() for _ in batches]
            inserted, stored = self._fetch(db, plan, [range(len(plan.ks))], fresh)
            return self._decide(batches, plan, inserted, stored, now)

    def prefetch(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]]) -> bool:
        """Start steps 1-2 of the next group (:meth:`ingest_many` of the same ``batches`` in the next transaction)
        now, on the spare connection in the background, while this transaction is still open; True if started.

        The pipeline calls it once this transaction's joins are decided: the database inserts and locks the next
        group's keys while the processor computes this group's metrics and commits it. Keys this transaction holds
        go in a second statement, which waits for this transaction's ``COMMIT`` (or rollback) like another
        replica's would: their state is read only after it. Discarded by :meth:`rollback`.
        """
        if self._prefetched is not None or self._conn is None or self._conn.closed or self._needs_resync:
            return False
        plan = _Plan(batches, self.clock())
        if not plan.ks:
            return False
        spare = self._spare
        if spare is None or spare.closed:
            try:
                spare = self._spare = connect(self.dsn, self._app, self.lock_timeout)
            except PostgresStoreError as exc:
                _logger.debug("no second connection for reading ahead: %s", exc)
                return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="otel-ml-pg-ahead")
        held = self._txn_keys
        parts = ([i for i, k in enumerate(plan.ks) if k not in held], [i for i, k in enumerate(plan.ks) if k in held])
        future = self._pool.submit(self._fetch, spare, plan, parts, True)
        self._prefetched = _Prefetch(batches, plan, future, spare)
        return True

    def _take_prefetched(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]],
                         fresh: bool) -> _Prefetch | None:
        """The prefetch of exactly ``batches``, its connection made the current one (the idle current connection
        becomes the spare); None if there is none (a prefetch of other batches is discarded)."""
        ahead = self._prefetched
        if ahead is None:
            return None
        current = self._conn
        idle = current is None or current.closed or (
            current.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE)
        if not fresh or not idle or not ahead.matches(batches) or ahead.future.exception() is not None:
            self._discard_prefetch()  # a failed read-ahead (lock timeout, lost connection): this step reads itself
            return None
        self._prefetched = None
        self._conn, self._spare = ahead.conn, self._conn
        return ahead

    def _discard_prefetch(self) -> None:
        """Wait for an outstanding prefetch and roll it back (its locks are released; never raises)."""
        ahead, self._prefetched = self._prefetched, None
        if ahead is None:
            return
        try:
            ahead.future.result()
            ahead.conn.rollback()
        except Exception:  # failed or broken: a new spare connection is opened when needed
            _close(ahead.conn)
            if ahead.conn is self._leader_conn:
                self._leader_conn = None

    def _fetch(self, db: psycopg.Connection[Any], plan: _Plan, parts: Sequence[Sequence[int]],
               fresh: bool) -> tuple[set[str], list[tuple[Any, ...]]]:
        """Step 1 and 2 of the join: insert-or-lock the plan's keys, then read the rows of those that existed.

        ``parts``: indexes into ``plan.ks``, one statement each (every statement locks in key order). In a transaction
        that wrote nothing before (``fresh``), the read goes in the same round trip (psycopg pipeline) and skips the
        rows this transaction inserted by their ``xmin``; otherwise it reads the keys the inserts did not return.
        Returns the inserted keys and the stored rows ``(k, arrived, joined, pred, label, gone)``.
        """
        if fresh:
            with db.pipeline():
                cursors = [db.execute(self._sql_insert, plan.params(part), binary=True) for part in parts if part]
                read = db.execute(self._sql_existing, (_texts(plan.ks),), binary=True)
                inserted = {r[0] for c in cursors for r in c.fetchall()}
                return inserted, read.fetchall()
        inserted = set()
        for part in parts:
            if part:
                inserted.update(r[0] for r in db.execute(self._sql_insert, plan.params(part), binary=True).fetchall())
        if len(inserted) == len(plan.ks):
            return inserted, []
        rest = _texts([k for k in plan.ks if k not in inserted])
        return inserted, db.execute(self._sql_locked, (rest,), binary=True).fetchall()

    def _decide(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], plan: _Plan, inserted: set[str],
                stored: list[tuple[Any, ...]], now: float) -> list[IngestResult]:
        """Step 3: the join decisions over the locked stored rows (quarantining undecodable ones), tombstones
        deferred to the commit, count deltas, eviction."""
        state: dict[str, object] = {}
        bad: list[tuple[str, bytes | None, bytes | None, str]] = []
        for k, arrived, joined, pred, label, gone in stored:
            if k in inserted:  # a row this statement inserted (read back only when not filtered by xmin)
                continue
            if joined is not None:
                state[k] = DONE if gone is None else GONE_PREDICTION if gone == 1 else GONE_LABEL
                continue
            try:
                state[k] = self._row(k, arrived, pred, label)
            except ValueError as exc:
                bad.append((k, pred, label, str(exc)))
        if bad:  # moved aside; their keys take this step's records as if they had never been stored
            self._quarantine(bad)
            self._dpending -= len(bad)
            redo = {b[0] for b in bad}
            self._db().execute(self._sql_insert, plan.params([i for i, k in enumerate(plan.ks) if k in redo]))
            inserted |= redo
        self._txn_keys.update(plan.ks)
        stored_pending = {k for k, v in state.items() if type(v) is tuple}  # _Joins marks them DONE as it goes
        joins = _Joins(state)
        results = [joins.batch(predictions, labels) for predictions, labels in batches]
        if joins.deletes:  # sent with the commit (one round trip less); flushed first by any read that needs it
            self._deferred.append((self._sql_tombstone, (now, _texts(joins.deletes))))
        mine_pending = sum(1 for k in plan.ks[:plan.n_new] if k in inserted)
        was_pending = sum(1 for k in joins.deletes if k in stored_pending)
        self._dpending += mine_pending - was_pending
        self._ddone += (len(inserted) - mine_pending) + was_pending
        self._now = now
        self._evict(results)
        return results

    def _evict(self, results: list[IngestResult]) -> None:
        if not results:
            return
        if self._pending_base is None or self.clock() - self._pending_read_at > 1.0:
            self._pending_base = self._count("pending") - self._dpending  # others' commits, refreshed every second
            self._pending_read_at = self.clock()
        if self._pending_base + self._dpending <= self.max_pending:
            return
        db = self._db()
        got = db.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                         (_LOCK_CLASS_EVICT, self.schema)).fetchone()
        if not got or not got[0]:
            return  # another replica is evicting the overage right now
        over = self._count("pending") - self.max_pending  # re-read: the statement sees every commit before the lock
        if over > 0:
            results[-1].evicted = self._pop_oldest(over, None)[0]

    def _count(self, column: str) -> int:
        row = self._db().execute(f"SELECT coalesce(sum({column}), 0)::bigint FROM {self._s}.counts").fetchone()
        return int(row[0] if row else 0) + (self._dpending if column == "pending" else self._ddone)

    # --- primitives (expiry, eviction, tombstone bound) -------------------------------------------------------------
    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:  # pragma: no cover - ingest_many is overridden
        raise NotImplementedError

    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], tombstones: Sequence[str],
               now: float) -> None:  # pragma: no cover - ingest_many is overridden
        raise NotImplementedError

    def _pop_oldest(self, limit: int, before: float | None) -> tuple[list[Row], int]:
        """Take up to ``limit`` oldest entries: pending rows become gone tombstones dated ``self._now`` (eviction:
        pending rows only; expiry: everything that arrived before ``before``, whose tombstones are deleted)."""
        s = self._s
        db = self._db()
        self._flush()
        if before is None:
            rows = db.execute(f"SELECT k, arrived, joined, pred, label FROM {s}.joins WHERE joined IS NULL "
                              "ORDER BY arrived, k LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
        else:
            rows = db.execute(f"SELECT k, arrived, joined, pred, label FROM {s}.joins WHERE arrived < %s "
                              "ORDER BY arrived, k LIMIT %s FOR UPDATE SKIP LOCKED", (before, limit)).fetchall()
        if not rows:
            return [], 0
        tombs = [r[0] for r in rows if r[2] is not None]
        live: list[Row] = []
        gone_keys: list[str] = []
        gone_kinds: list[int] = []
        bad: list[tuple[str, bytes | None, bytes | None, str]] = []
        for k, arrived, _, pred, label in (r for r in rows if r[2] is None):
            try:
                live.append(self._row(k, arrived, pred, label))
            except ValueError as exc:
                bad.append((k, pred, label, str(exc)))
                continue
            gone_keys.append(k)
            gone_kinds.append(1 if pred is not None else 2)
        if tombs:
            db.execute(f"DELETE FROM {s}.joins WHERE k = ANY(%b::text[])", (tombs,))
        if gone_keys:  # counted once, also after leaving: the key keeps a tombstone of the half that left
            db.execute(f"UPDATE {s}.joins AS t SET arrived = %b, joined = %b, gone = g.kind, pred = NULL, "
                       "label = NULL FROM unnest(%b::text[], %b::int2[]) AS g(k, kind) WHERE t.k = g.k",
                       (self._now, self._now, gone_keys, gone_kinds))
        if bad:
            self._quarantine(bad)
        self._dpending -= len(live) + len(bad)
        self._ddone += len(gone_keys) - len(tombs)
        return live, len(rows)

    def _mark_gone(self, rows: Sequence[Row], now: float) -> None:
        """Nothing to do: :meth:`_pop_oldest` turned the rows into gone tombstones in place (one UPDATE)."""

    def _drop_done(self, before: float, keep_at_most: int) -> None:
        self._flush()
        over = self._count("done") - keep_at_most
        if over > 0:
            s = self._s
            cur = self._db().execute(
                f"DELETE FROM {s}.joins WHERE k IN (SELECT k FROM {s}.joins WHERE joined IS NOT NULL "
                "ORDER BY arrived, k LIMIT %s FOR UPDATE SKIP LOCKED)", (over,))
            self._ddone -= max(cur.rowcount, 0)

    def is_leader(self) -> bool:
        """Whether this replica holds the store's sweep (expiry, tombstone bound); tries to take it when free."""
        if self._leader_conn is None or self._leader_conn.closed:
            self._leader_conn = None
            with self._guard("leader election"):
                db = self._db()
                row = db.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                 (_LOCK_CLASS_LEADER, self.schema)).fetchone()
                if row and row[0]:
                    self._leader_conn = db
                    _logger.info("join store: this replica (%s) now runs the expiry sweep", self.instance_id)
        return self._leader_conn is not None

    def expire(self, now: float) -> list[Row]:
        """Expiry on the leader only (other replicas return ``[]``); see the base class."""
        if not self.is_leader():
            return []
        self._wrote = True
        self._now = now
        with self._guard("expiry"):
            return super().expire(now)

    def pending(self) -> int:
        """Records waiting for their counterpart in the whole store (every replica's commits + this transaction)."""
        with self._guard("count"):
            return self._count("pending")

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record in the store (a cursor skips the tombstones already seen)."""
        with self._guard("oldest pending"):
            self._flush()
            row = self._db().execute(f"SELECT arrived FROM {self._s}.joins WHERE joined IS NULL AND arrived >= %s "
                                     "ORDER BY arrived LIMIT 1", (self._head,)).fetchone()
        if row is None:
            return None
        self._head = float(row[0])
        return self._head

    # --- transaction, aggregates, state ----------------------------------------------------------------------------
    def commit(self, totals: Mapping[Key, float]) -> None:
        """Write the deferred tombstones, this replica's totals and count deltas, then ``COMMIT``, in one round trip
        (psycopg pipeline mode); durable once this returns."""
        s = self._s
        wall = time.time()
        heartbeat = wall - self._last_heartbeat >= self.heartbeat
        with self._guard("commit", committing=True):
            db = self._db()
            with db.pipeline():
                for sql, params in self._deferred:
                    db.execute(sql, params)
                if totals:
                    names, attrs, values = [], [], []
                    for (name, at), value in totals.items():
                        names.append(name)
                        attrs.append(encode_attrs(at))
                        values.append(float(value))
                    db.execute(f"INSERT INTO {s}.aggregates (instance, metric, attrs, value) SELECT %b, * FROM "
                               "unnest(%b::text[], %b::text[], %b::float8[]) ON CONFLICT (instance, metric, attrs) "
                               "DO UPDATE SET value = excluded.value", (self.instance_id, names, attrs, values))
                if self._dpending or self._ddone:
                    db.execute(f"INSERT INTO {s}.counts (instance, pending, done) VALUES (%s, %s, %s) "
                               "ON CONFLICT (instance) DO UPDATE SET pending = counts.pending + excluded.pending, "
                               "done = counts.done + excluded.done", (self.instance_id, self._dpending, self._ddone))
                if heartbeat:
                    db.execute(f"INSERT INTO {s}.instances (instance, host, first_seen, last_seen) VALUES "
                               "(%s, %s, now(), now()) ON CONFLICT (instance) DO UPDATE SET last_seen = now(), "
                               "host = excluded.host, retired_at = NULL", (self.instance_id, socket.gethostname()))
                db.commit()
        self._healthy()
        if heartbeat:
            self._last_heartbeat = wall
        if self._pending_base is not None:
            self._pending_base += self._dpending
        self._deferred.clear()
        self._txn_keys.clear()
        self._wrote = False
        self._dpending = self._ddone = 0
        self._saved_head = self._head

    def rollback(self) -> None:
        """Discard everything since the last commit (never raises; a broken connection is simply dropped)."""
        self._reset()

    def load_aggregates(self) -> dict[Key, float]:
        """This replica's persisted totals (clears :meth:`needs_resync`)."""
        with self._guard("load aggregates"):
            rows = self._db().execute(f"SELECT metric, attrs, value FROM {self._s}.aggregates WHERE instance = %s",
                                      (self.instance_id,)).fetchall()
            self._end_read()
        self._needs_resync = False
        return {(name, decode_attrs(attrs)): value for name, attrs, value in rows}

    def _end_read(self) -> None:
        """End a read-only transaction (never left idle in transaction: the server would end the session)."""
        if not self._wrote:
            self._db().rollback()

    def delete_aggregates(self, keys: Sequence[Key]) -> None:
        """Remove totals of this replica in the current transaction (series retired by the cardinality caps)."""
        if not keys:
            return
        self._wrote = True
        with self._guard("delete aggregates"):
            self._db().execute(
                f"DELETE FROM {self._s}.aggregates a USING unnest(%b::text[], %b::text[]) AS d(metric, attrs) "
                "WHERE a.instance = %b AND a.metric = d.metric AND a.attrs = d.attrs",
                ([name for name, _ in keys], [encode_attrs(at) for _, at in keys], self.instance_id))

    def put_state(self, key: str, value: bytes) -> None:
        """Store a blob of this replica in the current transaction."""
        self._wrote = True
        with self._guard("state"):
            self._db().execute(f"INSERT INTO {self._s}.state VALUES (%s, %s, %s) ON CONFLICT (instance, key) "
                               "DO UPDATE SET value = excluded.value", (self.instance_id, key, bytes(value)))

    def load_state(self) -> dict[str, bytes]:
        """This replica's persisted blobs."""
        with self._guard("load state"):
            rows = self._db().execute(f"SELECT key, value FROM {self._s}.state WHERE instance = %s",
                                      (self.instance_id,)).fetchall()
            self._end_read()
        return {k: bytes(v) for k, v in rows}

    def adopter(self, timeout: float, publish: Publish) -> ReplicaAdopter:
        """The publisher of gone replicas' totals for this store (see :class:`ReplicaAdopter`; not started)."""
        return ReplicaAdopter(self.dsn, self.schema, self.instance_id, timeout, publish,
                              interval=min(10.0, max(timeout / 3, 0.5)))

    def close(self) -> None:
        """Roll back uncommitted work and close the connections (releasing the leader lock)."""
        self.rollback()
        self._drop()
        spare, self._spare = self._spare, None
        _close(spare)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


Publish = Callable[[str, dict[Key, float]], bool]
"""``publish(instance_id, totals)``: export ``totals`` once as the series of ``instance_id``; True on success."""


class ReplicaAdopter:
    """Publishes the last committed totals of replicas that are gone (the leader's job, on its own connection).

    A replica commits its counters with its joins, but exports them only every ``metrics.otlp.interval``: one
    killed between a commit and its next export (``kill -9``, OOM, node loss) leaves counts that only the database
    knows. When it comes back with the same ``instance_id`` it restores and exports them itself; a replica replaced
    under a new id (a Deployment's pod) never does. So one replica (the holder of an advisory lock) checks every
    ``interval`` for replicas whose heartbeat (``instances.last_seen``, refreshed with a commit every third of
    ``timeout``, at most every :data:`HEARTBEAT_S`; the processor commits at least every second) is older than
    ``timeout``, exports their totals once under their own ``instance_id``
    (``publish``) and marks them retired. Their series then end at their true final values, and sums over replicas
    are exact. A retired replica that comes back clears the mark with its next heartbeat.
    """

    def __init__(self, dsn: str, schema: str, instance_id: str, timeout: float, publish: Publish,
                 interval: float = 10.0) -> None:
        self.dsn, self.schema, self.instance_id = dsn, schema, instance_id
        self.timeout, self.publish, self.interval = timeout, publish, interval
        self._s = _quote(schema)
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-ml-adopter", daemon=True)

    def start(self) -> ReplicaAdopter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                _logger.exception("publishing the totals of gone replicas failed (retried in %.0f s)", self.interval)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def run_once(self) -> list[str]:
        """One check; returns the replicas whose totals were published."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, f"otel-ml-adopter {self.instance_id}"[:63])
            self._conn.autocommit = True
        conn, s = self._conn, self._s
        row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS_ADOPT, self.schema)).fetchone()
        if not row or not row[0]:
            return []  # another replica does it (the lock is held for the life of its connection)
        gone = [r[0] for r in conn.execute(
            f"SELECT instance FROM {s}.instances WHERE retired_at IS NULL AND instance <> %s "
            "AND last_seen < now() - make_interval(secs => %s) ORDER BY instance", (self.instance_id, self.timeout))]
        done = []
        for instance in gone:
            totals = {(name, decode_attrs(attrs)): value for name, attrs, value in conn.execute(
                f"SELECT metric, attrs, value FROM {s}.aggregates WHERE instance = %s", (instance,))}
            if totals and not self.publish(instance, totals):
                continue  # the collector did not take them: try again next time
            conn.execute(f"UPDATE {s}.instances SET retired_at = now() WHERE instance = %s AND retired_at IS NULL "
                         "AND last_seen < now() - make_interval(secs => %s)", (instance, self.timeout))
            _logger.warning("replica %s is gone (no heartbeat for %.0f s): published its last totals (%d series)",
                            instance, self.timeout, len(totals))
            done.append(instance)
        return done
