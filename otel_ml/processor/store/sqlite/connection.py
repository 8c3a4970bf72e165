"""The connection and transaction state machine (IDLE, ACTIVE, CLOSED) and its fault handling: open (schema,
format check, counts), ``BEGIN IMMEDIATE``, commit, rollback, close; every storage failure classified (SQLite
result code, then a write probe) and turned into a :class:`~otel_ml.processor.store.base.StorageError` once
the connection is in a known state; reopening with backoff.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from otel_ml.processor.aggregates import Key, encode_attrs
from otel_ml.processor.store.base import (
    BaseJoinStore,
    StorageError,
)
from otel_ml.processor.store.sqlite.files import secure_files
from otel_ml.processor.store.sqlite.schema import (
    _COUNTS_GET,
    _COUNTS_SET,
    _SCHEMA,
    StoreFormatError,
    _parse_counts,
    check_format,
)
from otel_ml.processor.store.sqlite.statements import _insert_sizes, _values_sql
from otel_ml.semconv.attributes import StoreErrorReason

_logger = logging.getLogger(__name__)

LOCK_TIMEOUT_S: Final = 5.0
"""Default wait for a lock held by another process before a step fails with ``locked``."""
REOPEN_BACKOFF_S: Final = 0.25
"""First wait before a closed connection is reopened; doubles on each failed attempt."""
REOPEN_BACKOFF_MAX_S: Final = 5.0
"""Longest wait between two attempts to reopen the store."""
_STORAGE_ERRORS: Final = (sqlite3.Error, MemoryError, OSError)
"""What a storage operation can fail with (OSError: preparing the files, e.g. on a filesystem that is gone)."""
_KIND_BY_CODE: Final = {
    sqlite3.SQLITE_FULL: StoreErrorReason.FULL,
    sqlite3.SQLITE_IOERR: StoreErrorReason.IO,
    sqlite3.SQLITE_CANTOPEN: StoreErrorReason.IO,
    sqlite3.SQLITE_NOMEM: StoreErrorReason.NOMEM,
    sqlite3.SQLITE_BUSY: StoreErrorReason.LOCKED,
    sqlite3.SQLITE_LOCKED: StoreErrorReason.LOCKED,
    sqlite3.SQLITE_PROTOCOL: StoreErrorReason.LOCKED,
    sqlite3.SQLITE_READONLY: StoreErrorReason.READONLY,
    sqlite3.SQLITE_PERM: StoreErrorReason.READONLY,
    sqlite3.SQLITE_AUTH: StoreErrorReason.READONLY,
    sqlite3.SQLITE_CORRUPT: StoreErrorReason.CORRUPT,
    sqlite3.SQLITE_NOTADB: StoreErrorReason.CORRUPT,
}
_PROBED: Final = frozenset({StoreErrorReason.IO, StoreErrorReason.READONLY, StoreErrorReason.CORRUPT,
                            StoreErrorReason.OTHER})
"""Kinds refined by a write probe in the store's directory (SQLite reports EROFS and EIO alike)."""
_KIND_BY_ERRNO: Final = {errno.ENOSPC: StoreErrorReason.FULL, errno.EDQUOT: StoreErrorReason.FULL,
                         errno.EROFS: StoreErrorReason.READONLY, errno.EACCES: StoreErrorReason.READONLY,
                         errno.EPERM: StoreErrorReason.READONLY, errno.ENOMEM: StoreErrorReason.NOMEM}
_KEEP_CONNECTION: Final = frozenset({StoreErrorReason.FULL, StoreErrorReason.NOMEM, StoreErrorReason.LOCKED})
"""Kinds after which the connection stays open (rolled back); every other failure closes it (reopened later)."""


class _State(enum.Enum):
    IDLE = "idle"
    """Connection open, no transaction."""
    ACTIVE = "active"
    """``BEGIN IMMEDIATE`` issued: the write lock is held."""
    CLOSED = "closed"
    """No connection: the next step reopens one (after the backoff)."""


def _probe(directory: Path) -> str | None:
    """Kind of failure writing one byte into ``directory`` shows (None when the write works)."""
    probe = directory / f".otel-ml-probe-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0")
        finally:
            os.close(fd)
    except OSError as exc:
        return _KIND_BY_ERRNO.get(exc.errno or 0, StoreErrorReason.IO)
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return None


class SqliteConnection(BaseJoinStore):
    """The connection of :class:`~otel_ml.processor.store.sqlite.SqliteJoinStore` and its transaction state."""

    def __init__(self, path: str | Path, label_window: float, max_pending: int, *,
                 lock_timeout: float = LOCK_TIMEOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(label_window, max_pending)
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._clock = clock
        self._db: sqlite3.Connection = None  # type: ignore[assignment]  # set by _open
        self._state = _State.CLOSED
        self._pending = self._done_count = self._live_head = 0
        self._saved = (0, 0, 0)
        self._persisted_counts = (0, 0)  # (pending, tombstones) as committed in meta.counts
        self._rowids: dict[str, int] = {}  # key -> rowid, of the last _lookup (joins update by rowid)
        self._gone_keys: set[str] = set()  # keys the last _lookup found as gone tombstones
        self._backoff = REOPEN_BACKOFF_S
        self._reopen_at = 0.0
        self._failing: str | None = None  # kind of the failure the store is in, None when healthy
        self._failures = 0
        try:
            self._open()
        except _STORAGE_ERRORS as exc:
            raise StorageError(self._classify(exc), f"cannot open {self.path}: {exc}") from exc

    # --- connection and transaction state --------------------------------------------------------------------------
    def _open(self, recount: bool = True) -> None:
        """Open a connection, check the format, count the rows; IDLE afterwards (raises on failure, nothing open).

        The pending and tombstone counts are committed with every transaction (``meta.counts``), so they always
        describe the state the file is in, whatever happened to the last ``COMMIT``; a reopen after a failure reads
        them (``recount=False``: counting scans the table, ~0.7 µs per row, 15 s at 20 million) and the first open
        of a process counts.
        """
        secure_files(self.path)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                             timeout=self.lock_timeout)
        try:
            db.execute(f"PRAGMA busy_timeout={int(self.lock_timeout * 1000)}")
            db.execute("PRAGMA journal_mode=WAL")
            sync = os.environ.get("OTEL_ML_SQLITE_SYNCHRONOUS", "NORMAL").upper()
            db.execute(f"PRAGMA synchronous={'FULL' if sync == 'FULL' else 'NORMAL'}")
            db.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache: bounded RSS whatever the store size
            db.execute("PRAGMA temp_store=MEMORY")
            db.execute("BEGIN IMMEDIATE")  # the schema and the format check in one transaction, like every write
            for statement in _SCHEMA:
                db.execute(statement)
            check_format(db, self.path)
            counts = None if recount else _parse_counts(db.execute(_COUNTS_GET).fetchone())
            if counts is None:
                live, total = db.execute("SELECT coalesce(sum(length(row) > 1), 0), count(*) FROM pending").fetchone()
                counts = (int(live), int(total) - int(live))
                db.execute(_COUNTS_SET, (f"{counts[0]},{counts[1]}",))
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        self._db = db
        self._pending, self._done_count = counts
        self._persisted_counts = counts
        self._live_head = 0  # every row with a smaller rowid is a tombstone (or gone)
        self._saved = (self._pending, self._done_count, self._live_head)
        self._state = _State.IDLE
        _logger.info("join store %s open: WAL, synchronous=%s, %d pending, %d tombstones", self.path,
                     "FULL" if sync == "FULL" else "NORMAL", self._pending, self._done_count)

    def _ensure_open(self) -> None:
        """Reopen a closed connection (at most once per backoff interval; raises :class:`StorageError`)."""
        if self._state is not _State.CLOSED:
            return
        if self._clock() < self._reopen_at:
            raise StorageError(self._failing or StoreErrorReason.OTHER,
                               f"{self.path} is being reopened after a failure (next attempt in "
                               f"{self._reopen_at - self._clock():.2f}s)")
        try:
            self._open(recount=False)
        except StoreFormatError:
            self._schedule_reopen()
            raise
        except _STORAGE_ERRORS as exc:
            kind = self._classify(exc)
            self._count_error(kind)
            self._note_failure(kind, exc, "reopening")
            self._schedule_reopen()
            raise StorageError(kind, f"cannot reopen {self.path}: {exc}") from exc
        self._backoff = REOPEN_BACKOFF_S

    def _schedule_reopen(self) -> None:
        self._reopen_at = self._clock() + self._backoff
        self._backoff = min(self._backoff * 2, REOPEN_BACKOFF_MAX_S)

    def _begin(self) -> None:
        if self._state is _State.ACTIVE:
            return
        self._ensure_open()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "beginning a transaction") from exc
        self._state = _State.ACTIVE
        self._saved = (self._pending, self._done_count, self._live_head)

    def _writable(self) -> None:
        """The commit-acknowledge invariant: a write runs only inside the open transaction (never autocommitted)."""
        if not self._db.in_transaction:
            raise self._fail(None, "writing outside a transaction")

    def _classify(self, exc: BaseException | None) -> str:
        if isinstance(exc, MemoryError):
            return StoreErrorReason.NOMEM
        if isinstance(exc, OSError):
            return _KIND_BY_ERRNO.get(exc.errno or 0, StoreErrorReason.IO)
        code = getattr(exc, "sqlite_errorcode", None)
        kind = _KIND_BY_CODE.get(code & 0xFF, StoreErrorReason.OTHER) if isinstance(code, int) \
            else StoreErrorReason.OTHER
        if code == sqlite3.SQLITE_IOERR | (12 << 8):  # SQLITE_IOERR_NOMEM
            return StoreErrorReason.NOMEM
        if kind in _PROBED or (isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_PROTOCOL):
            kind = _probe(self.path.parent) or kind  # SQLITE_PROTOCOL: also what a WAL store on a read-only fs gives
        return kind

    def _fail(self, exc: BaseException | None, doing: str, *, close: bool = False) -> StorageError:
        """Count a failure, bring the connection to a known state, and return the error to raise."""
        kind = self._classify(exc)
        self._count_error(kind)
        self._reset(close=close or kind not in _KEEP_CONNECTION)
        self._note_failure(kind, exc, doing)
        return StorageError(kind, f"{doing}: {exc if exc is not None else 'the transaction was lost'}")

    def _note_failure(self, kind: str, exc: BaseException | None, doing: str) -> None:
        """Log the first failure of an episode (and a change of kind); later ones are counted, not logged."""
        self._failures += 1
        if self._failing != kind:
            _logger.error("join store %s failed (%s) %s: %s; requests are answered with a retryable code until it "
                          "recovers", self.path, kind, doing, exc)
            self._failing = kind

    def _healthy(self) -> None:
        if self._failing is not None:
            _logger.warning("join store %s recovered after %d failed operations (last: %s)", self.path,
                            self._failures, self._failing)
            self._failing, self._failures = None, 0

    def _reset(self, close: bool) -> None:
        """Known state after a failure or a rollback: no transaction, counters as before it; closed if ``close``."""
        db = self._db
        if self._state is _State.ACTIVE:
            self._pending, self._done_count, self._live_head = self._saved
        self._rowids = {}
        self._quarantined.clear()
        if self._state is not _State.CLOSED:
            self._state = _State.IDLE
            try:
                if db.in_transaction:  # SQLite may have rolled back by itself (full disk, I/O error, no memory)
                    db.execute("ROLLBACK")
            except _STORAGE_ERRORS as exc:
                _logger.warning("join store %s: ROLLBACK failed (%s); reopening the connection", self.path, exc)
                close = True
            if close:
                try:
                    db.close()
                except _STORAGE_ERRORS:
                    pass
                self._state = _State.CLOSED
                self._schedule_reopen()


    def commit(self, totals: Mapping[Key, float]) -> None:
        """Persist ``totals`` and commit (durable against process death once this returns)."""
        self._begin()
        try:
            if totals:
                self._writable()
                self._db.executemany(
                    "INSERT INTO aggregates (metric, attrs, value) VALUES (?, ?, ?) "
                    "ON CONFLICT (metric, attrs) DO UPDATE SET value = excluded.value",
                    [(name, encode_attrs(attrs), value) for (name, attrs), value in totals.items()])
            self._writable()
            counts = (self._pending, self._done_count)
            if counts != self._persisted_counts:  # committed with the rows they count (read back at a reopen)
                self._db.execute(_COUNTS_SET, (f"{counts[0]},{counts[1]}",))
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "writing the aggregates") from exc
        try:
            self._db.execute("COMMIT")
        except _STORAGE_ERRORS as exc:  # the outcome may be unknown (fsync): reopened, counts read back
            self._needs_resync = True
            raise self._fail(exc, "committing", close=True) from exc
        self._persisted_counts = counts
        self._state = _State.IDLE
        self._rowids = {}
        self._healthy()

    def rollback(self) -> None:
        """Discard everything since the last commit (never raises; a no-op outside a transaction)."""
        self._reset(close=False)

    def close(self) -> None:
        """Roll back uncommitted work and close the database (never raises)."""
        self._reset(close=False)
        if self._state is not _State.CLOSED:
            try:
                self._db.close()
            except _STORAGE_ERRORS as exc:
                _logger.warning("join store %s: close failed: %s", self.path, exc)
            self._state = _State.CLOSED


    def _insert_rows(self, statement: tuple[str, str], params: list[Any]) -> None:
        """Run the multi-row INSERT ``statement`` (head, one row's placeholders) over the flat ``params``."""
        head, row = statement
        width = row.count("?")
        pos = 0
        for n in _insert_sizes(len(params) // width):
            self._db.execute(_values_sql(head, row, n), params[pos:pos + n * width])
            pos += n * width
