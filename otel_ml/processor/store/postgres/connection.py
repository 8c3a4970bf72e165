"""The replica's connections and transaction state: opening (migration, row-format check), reconnecting with a
back-off, turning every PostgreSQL error into :class:`~otel_ml.processor.store.postgres.PostgresStoreError` once
the store is back in a known state (failure episodes logged once), rollback and close.
"""

from __future__ import annotations

import logging
import marshal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from otel_ml.processor.config import dsn_without_password
from otel_ml.processor.store.base import BaseJoinStore
from otel_ml.processor.store.postgres.schema import migrate
from otel_ml.processor.store.postgres.session import (
    DEFAULT_LOCK_TIMEOUT_S,
    PostgresStoreError,
    _close,
    _psycopg,
    _quote,
    connect,
    error_kind,
)
from otel_ml.processor.store.sqlite import CANARY, MARSHAL_VERSION, ROW_ENCODING, StoreFormatError, _python
from otel_ml.semconv.attributes import StoreErrorReason as Kind

if TYPE_CHECKING:
    import psycopg

    from otel_ml.processor.store.postgres.readahead import _Prefetch

_logger = logging.getLogger(__name__)

REOPEN_BACKOFF_S: Final = 0.5
"""After a failed connection attempt, steps fail at once (``unavailable``) for this long before the next attempt."""
HEARTBEAT_S: Final = 10.0
"""How often a replica refreshes its ``instances.last_seen`` at most (more often with a short ``replica_timeout``:
a third of it)."""


class PostgresConnection(BaseJoinStore):
    """The connections of :class:`~otel_ml.processor.store.postgres.PostgresJoinStore` and its transaction state."""

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

    def rollback(self) -> None:
        """Discard everything since the last commit (never raises; a broken connection is simply dropped)."""
        self._reset()

    def close(self) -> None:
        """Roll back uncommitted work and close the connections (releasing the leader lock)."""
        self.rollback()
        self._drop()
        spare, self._spare = self._spare, None
        _close(spare)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
