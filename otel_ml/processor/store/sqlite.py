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

Tombstones: a NULL ``row`` is the tombstone of a joined key; a one-byte ``row`` (:data:`GONE_BLOBS`) the tombstone
of a record that expired or was evicted unjoined (``P`` prediction, ``L`` label). Live rows are those with
``length(row) > 1``. Such stores have ``meta.schema`` 4; a store with a newer schema than this code knows is refused
(:class:`StoreFormatError`), so a future format is never misread (processors from before schema 4 do not check:
do not downgrade one onto a schema-4 store).

Storage faults (the state machine of :mod:`otel_ml.processor.store.base`): every SQLite failure (and a
``MemoryError``, which Python's sqlite3 raises for ``SQLITE_NOMEM``) is turned into a
:class:`~otel_ml.processor.store.base.StorageError` after the store is back in a known state. SQLite rolls a
transaction back by itself on ``SQLITE_FULL``, ``SQLITE_IOERR``, ``SQLITE_NOMEM`` and sometimes ``SQLITE_BUSY``
(https://www.sqlite.org/lang_transaction.html, "Response To Errors Within A Transaction"), so ``ROLLBACK`` is
issued only while ``Connection.in_transaction`` says a transaction is still open, and the in-transaction state is
cleared whatever happens. The kind comes from the SQLite result code, refined by writing one byte in the store's
directory (its ``errno`` tells a read-only filesystem, a full disk and an I/O error apart, which SQLite reports
alike as ``SQLITE_IOERR``). A lock held by another process is waited for ``lock_timeout`` (SQLite's busy handler),
then reported as ``locked``. After an I/O, read-only, corruption or unknown error, and after any failed
``COMMIT`` (whose outcome an fsync failure can leave unknown), the connection is closed: its file descriptors are
released (an operator can remount or repair the filesystem) and the next step opens a new one, at most every
:data:`REOPEN_BACKOFF_S` (doubling up to :data:`REOPEN_BACKOFF_MAX_S`), recounting the pending rows; a connection
opened while the filesystem was read-only is read-only for good, so a new one is the only way to heal.

Quarantine: a stored row that does not decode to a row of the expected shape (marshal or JSON error, wrong length,
a value of the wrong type, an unknown tombstone byte) is moved to the ``quarantine`` table (key, raw bytes, reason,
time; the newest :data:`QUARANTINE_MAX_ROWS` kept) in the current transaction, and the key is free for new records.
Every column's type is checked on expiry and eviction, and on lookups only under ``strict_decoding`` (the hot path
checks the length and the model: 17 ``type`` checks per joined row cost ~2 µs, measured); the writer retries a
request that failed for no storage reason in strict mode, so a damaged row that still decodes is found then.

File modes: the store's directory is created ``0700`` and the database ``0600`` before SQLite opens it (SQLite
gives ``-wal`` and ``-shm`` the database file's mode). Existing files readable by others are warned about and made
``0600``; an existing directory readable by others is warned about (it may be shared: it is not changed).
"""

from __future__ import annotations

import enum
import errno
import functools
import itertools
import json
import logging
import marshal
import os
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

from otel_ml.errors import DataError, StoreError
from otel_ml.processor.aggregates import Key, decode_attrs, encode_attrs
from otel_ml.processor.records import ARRIVED, COLUMNS, TASK, Row
from otel_ml.processor.store.base import (
    DONE,
    GONE_LABEL,
    GONE_PREDICTION,
    BaseJoinStore,
    Quarantined,
    StorageError,
    gone_marker,
)
from otel_ml.semconv.attributes import StoreErrorReason

_logger = logging.getLogger(__name__)

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
MARSHAL_VERSION = 4
"""marshal format of the rows (pinned: the interpreter default may change with Python)."""
ROW_ENCODING = f"marshal:{MARSHAL_VERSION}"
SCHEMA_VERSION: Final = 4
"""``meta.schema`` this module writes and the newest it reads (4: gone tombstones, quarantine table)."""
CANARY: tuple[Any, ...] = ("fraud", "2024-06-01", "binary", "region=eu,tier=gold", "fraud", "", "é€𝄞 ünïcode",
                              "x" * 300, None, 0.0, -0.0, -1.5, 1e308, 5e-324, 1700000000.123456, "1", None)
"""Row-shaped values covering every kind rows hold (repeated "fraud" exercises marshal's back-references)."""
GONE_BLOBS: Final = {GONE_PREDICTION: b"P", GONE_LABEL: b"L"}
"""The ``row`` of a gone tombstone, by marker."""
_GONE_BY_BYTE: Final = {blob[0]: marker for marker, blob in GONE_BLOBS.items()}
QUARANTINE_MAX_ROWS: Final = 10_000
"""Quarantined rows kept (the oldest beyond are deleted; every one was counted and logged)."""
LOCK_TIMEOUT_S: Final = 5.0
"""Default wait for a lock held by another process before a step fails with ``locked``."""
REOPEN_BACKOFF_S: Final = 0.25
"""First wait before a closed connection is reopened; doubles on each failed attempt."""
REOPEN_BACKOFF_MAX_S: Final = 5.0
"""Longest wait between two attempts to reopen the store."""
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS pending (k TEXT NOT NULL UNIQUE, arrived REAL NOT NULL, row BLOB)",
    "CREATE TABLE IF NOT EXISTS aggregates (metric TEXT NOT NULL, attrs TEXT NOT NULL, value REAL NOT NULL, "
    "PRIMARY KEY (metric, attrs)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS quarantine (k TEXT, raw BLOB, reason TEXT NOT NULL, at REAL NOT NULL)",
    "INSERT OR IGNORE INTO meta VALUES ('schema', '3')",
)
_COUNTS_GET: Final = "SELECT value FROM meta WHERE key = 'counts'"
_COUNTS_SET: Final = "INSERT OR REPLACE INTO meta (key, value) VALUES ('counts', ?)"
_JSON_START = ord("[")
_loads = marshal.loads
_ROW_WIDTH: Final = len(COLUMNS)
_STR = (str,)
_OPT_STR = (str, type(None))
_OPT_NUM = (float, int, type(None))
_COLUMN_TYPES: Final = (_STR, _OPT_NUM, _STR, _OPT_STR, _OPT_STR, _OPT_STR, _OPT_STR, _OPT_NUM, _OPT_NUM, _OPT_STR,
                        _OPT_STR, _OPT_NUM, _OPT_STR, _OPT_NUM, _OPT_STR, _OPT_STR, _OPT_NUM)
"""Types each column of a decoded row may have (``k`` and ``arrived`` come from their own SQLite columns)."""
_GOOD_SHAPES: set[tuple[type, ...]] = set()
"""Column type tuples already validated (a handful repeat: one set lookup per decoded row)."""
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


class StoreFormatError(StoreError):
    """The store's row encoding cannot be read safely by this Python (see the module docstring)."""


class _State(enum.Enum):
    IDLE = "idle"
    """Connection open, no transaction."""
    ACTIVE = "active"
    """``BEGIN IMMEDIATE`` issued: the write lock is held."""
    CLOSED = "closed"
    """No connection: the next step reopens one (after the backoff)."""


def _python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _dumps(values: tuple[Any, ...]) -> bytes:
    return marshal.dumps(values, MARSHAL_VERSION)


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


def _parse_counts(row: tuple[Any, ...] | None) -> tuple[int, int] | None:
    """``(pending, tombstones)`` from ``meta.counts`` ("p,t"), None when absent or unreadable (then recounted)."""
    try:
        pending, done = (int(x) for x in str(row[0]).split(",")) if row else (-1, -1)
    except ValueError:
        return None
    return (pending, done) if pending >= 0 and done >= 0 else None


class _Undecodable(DataError):
    """A stored row that does not decode to a row of the expected shape (the message says why)."""


def _check_row(row: Row) -> Row:
    """``row`` if its length and column types are a row's; raises :class:`_Undecodable` otherwise."""
    if len(row) != _ROW_WIDTH:
        raise _Undecodable(f"{len(row)} columns, expected {_ROW_WIDTH}")
    shape = tuple(map(type, row))
    if shape not in _GOOD_SHAPES:
        for name, value, allowed in zip(COLUMNS, row, _COLUMN_TYPES, strict=True):
            if type(value) not in allowed:
                raise _Undecodable(f"column {name} holds a {type(value).__name__}")
        if row[TASK] is None and row[2] is None:
            raise _Undecodable("neither a prediction nor a label")
        if len(_GOOD_SHAPES) < 4096:
            _GOOD_SHAPES.add(shape)
    return row


def _decode(k: str, arrived: float, blob: bytes) -> Row:
    """The row stored as ``blob`` (marshal or, after a migration, JSON); raises :class:`_Undecodable`."""
    try:
        values = json.loads(blob) if blob[:1] == b"[" else _loads(blob)
        row = (k, arrived, *values)
    except Exception as exc:  # marshal raises ValueError/EOFError/TypeError (and worse on garbage): all undecodable
        raise _Undecodable(f"{type(exc).__name__}: {exc}") from exc
    return _check_row(row)


def check_format(db: sqlite3.Connection, path: object) -> None:
    """Refuse a store this Python cannot read identically; register this Python's canary (in the open transaction).

    Raises:
        StoreFormatError: Unknown ``row_encoding`` or newer ``schema``, or a canary of another Python decodes
            differently here.
    """
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('row_encoding', 'schema') "
                           "OR key LIKE 'canary:%'"))
    how = (f"Migrate with the Python that wrote it: stop this processor, run `python -m "
           f"otel_ml.processor.store.migrate {path}` with the previous processor image, then start this one again "
           f"(see otel_ml.processor.store.sqlite)")
    schema = meta.pop("schema", "3")
    if not str(schema).isdigit() or int(schema) > SCHEMA_VERSION:
        raise StoreFormatError(f"join store {path} has schema {schema!r}; this processor reads schema "
                               f"{SCHEMA_VERSION} and older: it was written by a newer otel-ml")
    if int(schema) < SCHEMA_VERSION:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
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
        if not ok and db.execute("SELECT 1 FROM pending WHERE length(row) > 1 LIMIT 1").fetchone() is None:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))  # nothing that Python wrote is left to read
        elif not ok:
            raise StoreFormatError(f"join store {path} has rows written by Python {key.split(':', 1)[1]} whose "
                                   f"marshal encoding Python {_python()} does not read identically. {how}")
    if mine not in meta:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('row_encoding', ?), (?, ?)",
                   (ROW_ENCODING, mine, _dumps(CANARY).hex()))


_WARNED_DIRECTORIES: set[Path] = set()


def secure_files(path: Path) -> None:
    """Create the store's missing directories ``0700`` and its database ``0600``; fix or warn about looser modes.

    Runs before every open. Files this module owns (the database, ``-wal``, ``-shm``) are made ``0600`` with a
    warning when group or others may read them; an existing directory open to others is only warned about.
    """
    directory = path.parent
    missing: list[Path] = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)
    if not missing and directory not in _WARNED_DIRECTORIES:
        mode = stat.S_IMODE(directory.stat().st_mode)
        if mode & 0o077:
            _WARNED_DIRECTORIES.add(directory)  # once per process: reopening after a failure must not repeat it
            _logger.warning("join store directory %s has mode %o: group or others can reach the store files; "
                            "`chmod 700` it (or give the store a directory of its own)", directory, mode)
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(name.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            _logger.warning("join store file %s had mode %o: made 0600 (owner only)", name, mode)
            os.chmod(name, 0o600)


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


class SqliteJoinStore(BaseJoinStore):
    """SQLite WAL backend (see the module docstring for durability, faults and quarantine)."""

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

    def load_aggregates(self) -> dict[Key, float]:
        """Persisted totals (clears :meth:`needs_resync`); an undecodable row is quarantined (its total restarts from
        zero) and counted."""
        self._ensure_open()
        try:
            rows = self._db.execute("SELECT metric, attrs, value FROM aggregates").fetchall()
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "reading the aggregates") from exc
        self._needs_resync = False
        out: dict[Key, float] = {}
        bad: list[tuple[str, str, str]] = []
        for name, attrs, value in rows:
            try:
                if not isinstance(name, str) or not isinstance(value, float | int):
                    raise _Undecodable("not a (metric, value) pair")
                out[(name, decode_attrs(attrs))] = float(value)
            except (ValueError, TypeError) as exc:
                bad.append((name, attrs, f"aggregate: {_reason(exc)}"))
        if bad:
            self._quarantine_aggregates(bad)
        return out

    def _quarantine_aggregates(self, rows: list[tuple[Any, Any, str]]) -> None:
        """Move undecodable aggregate rows to the quarantine in their own transaction (at open or resync)."""
        self._begin()
        try:
            self._writable()
            self._db.executemany("DELETE FROM aggregates WHERE metric IS ? AND attrs IS ?",
                                 [(n, at) for n, at, _ in rows])
            at_time = time.time()
            self._db.executemany("INSERT INTO quarantine (k, raw, reason, at) VALUES (?, ?, ?, ?)",
                                 [(f"aggregate:{n!r}", repr(at).encode(), reason, at_time) for n, at, reason in rows])
            self._quarantined.extend(Quarantined(f"aggregate:{n!r}", reason) for n, _, reason in rows)
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "quarantining aggregates") from exc

    def delete_aggregates(self, keys: Sequence[Key]) -> None:
        """Remove totals in the current transaction."""
        self._begin()
        try:
            self._writable()
            self._db.executemany("DELETE FROM aggregates WHERE metric = ? AND attrs = ?",
                                 [(name, encode_attrs(attrs)) for name, attrs in keys])
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "deleting aggregates") from exc

    def put_state(self, key: str, value: bytes) -> None:
        """Store a blob in the current transaction."""
        self._begin()
        try:
            self._writable()
            self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, value))
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "writing state") from exc

    def load_state(self) -> dict[str, bytes]:
        """Persisted blobs."""
        self._ensure_open()
        try:
            return {k: bytes(v) for k, v in self._db.execute("SELECT key, value FROM state")}
        except _STORAGE_ERRORS as exc:
            raise self._fail(exc, "reading state") from exc

    def close(self) -> None:
        """Roll back uncommitted work and close the database (never raises)."""
        self._reset(close=False)
        if self._state is not _State.CLOSED:
            try:
                self._db.close()
            except _STORAGE_ERRORS as exc:
                _logger.warning("join store %s: close failed: %s", self.path, exc)
            self._state = _State.CLOSED


def _reason(exc: BaseException) -> str:
    """Short reason text of a decoding failure (stored with the quarantined row)."""
    if isinstance(exc, _Undecodable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:200]
