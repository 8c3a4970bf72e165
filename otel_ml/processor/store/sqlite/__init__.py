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

Modules (this package re-exports their public names; import from ``otel_ml.processor.store.sqlite``):

- :mod:`~otel_ml.processor.store.sqlite.joins`: :class:`SqliteJoinStore` and its join queries (lookup, write).
- :mod:`~otel_ml.processor.store.sqlite.connection`: the connection and transaction state machine, fault handling.
- :mod:`~otel_ml.processor.store.sqlite.expiry`: expiry, eviction, gone tombstones, quarantine.
- :mod:`~otel_ml.processor.store.sqlite.totals`: persisted aggregate totals and state blobs.
- :mod:`~otel_ml.processor.store.sqlite.schema`: tables, schema version, row encoding, canaries, row decoding.
- :mod:`~otel_ml.processor.store.sqlite.statements`: the fixed SQL texts of the hot path.
- :mod:`~otel_ml.processor.store.sqlite.files`: file modes.
"""

from otel_ml.processor.store.sqlite.connection import LOCK_TIMEOUT_S, REOPEN_BACKOFF_MAX_S, REOPEN_BACKOFF_S
from otel_ml.processor.store.sqlite.expiry import QUARANTINE_MAX_ROWS
from otel_ml.processor.store.sqlite.files import secure_files
from otel_ml.processor.store.sqlite.joins import SqliteJoinStore
from otel_ml.processor.store.sqlite.schema import (
    CANARY,
    GONE_BLOBS,
    MARSHAL_VERSION,
    ROW_ENCODING,
    SCHEMA_VERSION,
    StoreFormatError,
    _python,
    check_format,
)
from otel_ml.processor.store.sqlite.statements import _CHUNK, _insert_sizes

__all__ = [
    "CANARY",
    "GONE_BLOBS",
    "LOCK_TIMEOUT_S",
    "MARSHAL_VERSION",
    "QUARANTINE_MAX_ROWS",
    "REOPEN_BACKOFF_MAX_S",
    "REOPEN_BACKOFF_S",
    "ROW_ENCODING",
    "SCHEMA_VERSION",
    "_CHUNK",
    "SqliteJoinStore",
    "StoreFormatError",
    "_insert_sizes",
    "_python",
    "check_format",
    "secure_files",
]
