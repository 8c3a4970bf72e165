"""How the store conformance suites open each backend and make its storage fail for real.

A backend plugs in with one :class:`StoreBackend` subclass registered in :data:`BACKENDS`:

* :meth:`StoreBackend.open` opens a store on fresh storage for the test (a second call, or :meth:`reopen`, opens
  the same storage again, like a restart: only for ``durable`` backends);
* :attr:`StoreBackend.faults` lists the :class:`~otel_ml.semconv.attributes.StoreErrorReason` kinds the backend
  can produce *for real*, and :meth:`StoreBackend.fault` returns a :class:`Fault` for one of them: ``open`` the
  store on storage that can fail that way, ``inject`` the fault, ``heal`` it. ``tests/processor/test_store_faults.py``
  runs every listed kind through the same checks (failure raised as ``StorageError`` of that kind, nothing of a
  failed step visible, recovery without reopening the store by hand, counters equal to the truth);
* :meth:`StoreBackend.corrupt` damages the stored record of a key the way a disk would (``can_corrupt``), for the
  quarantine cases;
* :meth:`StoreBackend.writes_outside_transactions` returns every write the backend ran outside a transaction since
  the store was opened (the commit-acknowledge invariant: must stay empty);
* ``gone_tombstones``: the backend keeps tombstones of records that expired or were evicted unjoined (the "counted
  once" cases of the conformance suite run for it); every backend does (``_mark_gone`` is abstract), the flag is
  for a new backend on its way there.

Nothing here mocks a database: the SQLite faults are a full tmpfs, an ext4 filesystem turned read-only or shut
down by the kernel, a lock held by another connection and SQLite's own heap limit.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, ClassVar

import pytest

from otel_ml.processor.store import BaseJoinStore, MemoryJoinStore, SqliteJoinStore
from otel_ml.processor.store.base import StorageError
from otel_ml.semconv.attributes import StoreErrorReason as Kind
from tests.support.faultfs import Ext4Loop, Tmpfs

DAY = 86400.0


class Fault:
    """One real fault of one backend: ``open`` a store where it can happen, ``inject`` it, ``heal`` it."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def open(self, label_window: float = 7 * DAY, max_pending: int = 100_000) -> BaseJoinStore:
        raise NotImplementedError

    def inject(self, store: BaseJoinStore) -> None:
        raise NotImplementedError

    def heal(self, store: BaseJoinStore) -> None:
        raise NotImplementedError

    def reopen(self) -> BaseJoinStore:
        """The same storage opened again (after :meth:`heal`; durability of what was committed)."""
        raise NotImplementedError

    def cleanup(self) -> None:
        """Undo whatever the fault left (unmount, release locks); never raises."""


class StoreBackend:
    """A backend under test (see the module docstring)."""

    name: ClassVar[str]
    durable: ClassVar[bool] = True
    faults: ClassVar[tuple[str, ...]] = ()
    can_corrupt: ClassVar[bool] = False
    gone_tombstones: ClassVar[bool] = True

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        self.tmp_path = tmp_path
        self.request = request
        self.opened: list[BaseJoinStore] = []

    def track(self, store: BaseJoinStore) -> BaseJoinStore:
        self.opened.append(store)
        return store

    def open(self, label_window: float = 7 * DAY, max_pending: int = 1000, name: str = "store") -> BaseJoinStore:
        raise NotImplementedError

    def reopen(self, store: BaseJoinStore) -> BaseJoinStore:
        """Close ``store`` and open its storage again (a restart)."""
        raise NotImplementedError

    def fault(self, kind: str) -> Fault:
        raise NotImplementedError

    def corrupt(self, store: BaseJoinStore, key: str) -> None:
        raise NotImplementedError

    def writes_outside_transactions(self, store: BaseJoinStore) -> list[str]:
        return []

    def close_all(self) -> None:
        for s in self.opened:
            try:
                s.close()
            except Exception:
                pass


class MemoryBackend(StoreBackend):
    """Not durable, and nothing in it fails the way storage fails: no fault kinds, no corruption."""

    name = "memory"
    durable = False

    def open(self, label_window: float = 7 * DAY, max_pending: int = 1000, name: str = "store") -> BaseJoinStore:
        store = MemoryJoinStore(label_window, max_pending)
        self.opened.append(store)
        return store


_WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)


class TracedSqliteStore(SqliteJoinStore):
    """The real SQLite store, with SQLite's statement trace recording writes run outside a transaction."""

    outside: list[str]

    def _open(self, recount: bool = True) -> None:
        super()._open(recount)
        if not hasattr(self, "outside"):
            self.outside = []
        db = self._db

        def trace(statement: str) -> None:
            if _WRITE.match(statement) and not db.in_transaction:
                self.outside.append(statement[:120])
        db.set_trace_callback(trace)


def _libsqlite() -> Any:
    """The SQLite library Python's sqlite3 module uses (the same shared object, so the same global heap limit)."""
    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    lib.sqlite3_hard_heap_limit64.restype = ctypes.c_int64
    lib.sqlite3_hard_heap_limit64.argtypes = [ctypes.c_int64]
    return lib


def set_heap_limit(limit: int) -> None:
    """``sqlite3_hard_heap_limit64`` (0: none); the pragma of the same name can only lower the limit."""
    _libsqlite().sqlite3_hard_heap_limit64(limit)


class SqliteFault(Fault):
    def __init__(self, kind: str, backend: SqliteBackend) -> None:
        super().__init__(kind)
        self.backend = backend
        self.fs: Tmpfs | Ext4Loop | None = None
        self.path: Path | None = None
        self._other: sqlite3.Connection | None = None
        self.lock_timeout = 0.2

    def open(self, label_window: float = 7 * DAY, max_pending: int = 100_000) -> BaseJoinStore:
        tmp = self.backend.tmp_path
        if self.kind == Kind.FULL:
            self.fs = Tmpfs(tmp / "tmpfs", 4 * 2**20)
            self.path = self.fs.path / "store" / "store.db"
        elif self.kind in (Kind.READONLY, Kind.IO):
            self.fs = Ext4Loop(tmp / "ext4", 32)
            self.path = self.fs.path / "store" / "store.db"
        else:
            self.path = tmp / "faulty" / "store.db"
        self._window, self._max = label_window, max_pending
        return self.backend.track(TracedSqliteStore(self.path, label_window, max_pending,
                                                    lock_timeout=self.lock_timeout))

    def inject(self, store: BaseJoinStore) -> None:
        assert isinstance(store, SqliteJoinStore)
        if self.kind == Kind.FULL:
            assert isinstance(self.fs, Tmpfs)
            self.fs.fill()
        elif self.kind == Kind.READONLY:
            assert isinstance(self.fs, Ext4Loop)
            self.fs.sync()  # what was committed before is on disk (an aborted journal drops dirty pages)
            self.fs.fail_readonly()
        elif self.kind == Kind.IO:
            assert isinstance(self.fs, Ext4Loop)
            self.fs.shut_down()
        elif self.kind == Kind.LOCKED:  # another process's connection holds the write lock
            self._other = sqlite3.connect(str(self.path), isolation_level=None)
            self._other.execute("BEGIN IMMEDIATE")
        elif self.kind == Kind.NOMEM:  # SQLite's own allocator refuses beyond a hard heap limit
            set_heap_limit(int(_libsqlite().sqlite3_memory_used()) + 256 * 1024)
        else:
            raise AssertionError(self.kind)

    def heal(self, store: BaseJoinStore) -> None:
        assert isinstance(store, SqliteJoinStore)
        if self.kind == Kind.FULL:
            assert isinstance(self.fs, Tmpfs)
            self.fs.free()
        elif self.kind == Kind.READONLY:
            # the store released its files (or the unmount would wait forever); repaired, mounted read-only first:
            # reopening fails (read-only) until the filesystem is writable again
            assert isinstance(self.fs, Ext4Loop)
            self.fs.repair(readonly=True)
            _wait_failure(store, Kind.READONLY)
            self.fs.remount_rw()
        elif self.kind == Kind.IO:
            assert isinstance(self.fs, Ext4Loop)
            self.fs.repair()
        elif self.kind == Kind.LOCKED:
            assert self._other is not None
            self._other.execute("ROLLBACK")
            self._other.close()
            self._other = None
        elif self.kind == Kind.NOMEM:
            set_heap_limit(0)

    def reopen(self) -> BaseJoinStore:
        assert self.path is not None
        return self.backend.track(TracedSqliteStore(self.path, self._window, self._max))

    def cleanup(self) -> None:
        if self._other is not None:
            self._other.close()
        if self.kind == Kind.NOMEM:
            set_heap_limit(0)
        self.backend.close_all()
        if self.fs is not None:
            self.fs.umount()


def _wait_failure(store: SqliteJoinStore, kind: str, timeout: float = 10.0) -> None:
    """Poke ``store`` until an attempt to reopen it fails with ``kind`` (after its reopen backoff)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            store.load_aggregates()
        except StorageError as exc:
            last = exc
            if exc.kind == kind and "reopened after a failure" not in str(exc):
                return
        else:
            raise AssertionError(f"the store opened while the filesystem was read-only ({store.path})")
        time.sleep(0.05)
    raise AssertionError(f"no {kind} failure within {timeout}s (last: {last!r})")


class SqliteBackend(StoreBackend):
    """The durable default: every fault kind but ``unavailable`` (there is no server to lose)."""

    name = "sqlite"
    faults = (Kind.FULL, Kind.IO, Kind.READONLY, Kind.LOCKED, Kind.NOMEM)
    can_corrupt = True

    def open(self, label_window: float = 7 * DAY, max_pending: int = 1000, name: str = "store") -> BaseJoinStore:
        return self.track(TracedSqliteStore(self.tmp_path / f"{name}.db", label_window, max_pending))

    def reopen(self, store: BaseJoinStore) -> BaseJoinStore:
        assert isinstance(store, SqliteJoinStore)
        store.close()
        return self.track(TracedSqliteStore(store.path, store.label_window, store.max_pending))

    def fault(self, kind: str) -> Fault:
        return SqliteFault(kind, self)

    def corrupt(self, store: BaseJoinStore, key: str) -> None:
        """Garbage in the key's stored row, written by another connection (the store sees it on its next read)."""
        assert isinstance(store, SqliteJoinStore)
        other = sqlite3.connect(str(store.path), isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            n = other.execute("UPDATE pending SET row = X'00ff13370d0a' WHERE k = ?", (key,)).rowcount
            other.execute("COMMIT")
        finally:
            other.close()
        assert n == 1, f"no stored row for {key!r}"

    def writes_outside_transactions(self, store: BaseJoinStore) -> list[str]:
        return list(getattr(store, "outside", []))


_schemas = itertools.count()


class PostgresFault(Fault):
    """A real fault of the PostgreSQL store, on a throwaway cluster of its own (the session's is never broken):

    * ``unavailable``: the server stopped (``pg_ctl stop -m fast``: sessions end, new connections are refused);
    * ``readonly``: the database switched to ``default_transaction_read_only`` (what a replica's DSN meets after a
      failover to a standby): sessions are ended, the store's first step notices (counted ``unavailable`` and
      drained in ``inject``), every later one is refused ``readonly``;
    * ``full``: the database lives in a tablespace on a tmpfs that is filled up (``No space left on device``);
    * ``locked``: another session holds ``LOCK TABLE ... IN EXCLUSIVE MODE`` on the join rows longer than the
      store's ``lock_timeout``.
    """

    def __init__(self, kind: str, backend: PostgresBackend) -> None:
        super().__init__(kind)
        self.backend = backend
        self.server: Any = None
        self.fs: Tmpfs | None = None
        self.dsn = ""
        self._other: Any = None

    def open(self, label_window: float = 7 * DAY, max_pending: int = 100_000) -> BaseJoinStore:
        from tests.support.postgres import PostgresServer

        self.server = PostgresServer().start()
        self.dsn = self.server.dsn()
        if self.kind == Kind.FULL:
            import os
            import pwd

            self.fs = Tmpfs(self.server.root / "tmpfs", 24 * 2**20)
            owner = pwd.getpwnam(self.server.superuser)
            os.chown(self.fs.path, owner.pw_uid, owner.pw_gid)
            (self.fs.path / "ts").mkdir()
            os.chown(self.fs.path / "ts", owner.pw_uid, owner.pw_gid)
            self.server.psql(f"CREATE TABLESPACE small LOCATION '{self.fs.path / 'ts'}'")
            self.dsn = self.server.create_database_in("fulldisk", "small")
        self._window, self._max = label_window, max_pending
        return self._open()

    def _open(self) -> BaseJoinStore:
        from otel_ml.processor.store.postgres import PostgresJoinStore

        return self.backend.track(PostgresJoinStore(self.dsn, self._window, self._max, "test", schema="faults",
                                                    lock_timeout=0.2))

    def inject(self, store: BaseJoinStore) -> None:
        import psycopg

        if self.kind == Kind.UNAVAILABLE:
            self.server.stop()
        elif self.kind == Kind.READONLY:
            database = psycopg.conninfo.conninfo_to_dict(self.dsn)["dbname"]
            self.server.psql(f"ALTER DATABASE {database} SET default_transaction_read_only = on")
            self.server.terminate_backends(database)
            with pytest.raises(StorageError):
                store.load_aggregates()  # the failover's broken session, noticed before the steps under test
            store.rollback()
            time.sleep(0.6)  # past the reconnect back-off
            store.take_errors()
        elif self.kind == Kind.FULL:
            assert self.fs is not None
            self.fs.fill()
        elif self.kind == Kind.LOCKED:
            self._other = psycopg.connect(self.dsn)
            self._other.execute("LOCK TABLE faults.joins IN EXCLUSIVE MODE")
        else:
            raise AssertionError(self.kind)

    def heal(self, store: BaseJoinStore) -> None:
        import psycopg

        if self.kind == Kind.UNAVAILABLE:
            self.server.start()
        elif self.kind == Kind.READONLY:
            database = psycopg.conninfo.conninfo_to_dict(self.dsn)["dbname"]
            self.server.psql(f"ALTER DATABASE {database} SET default_transaction_read_only = off")
        elif self.kind == Kind.FULL:
            assert self.fs is not None
            self.fs.free()
        elif self.kind == Kind.LOCKED:
            self._other.rollback()
            self._other.close()
            self._other = None

    def reopen(self) -> BaseJoinStore:
        return self._open()

    def cleanup(self) -> None:
        if self._other is not None:
            self._other.close()
        self.backend.close_all()
        if self.server is not None:
            self.server.close()  # before unmounting: the tablespace is in use while the server runs
        if self.fs is not None:
            self.fs.umount()


class PostgresBackend(StoreBackend):
    """The shared backend, on the session's throwaway PostgreSQL cluster (a fresh schema per test)."""

    name = "postgres"
    faults = (Kind.UNAVAILABLE, Kind.READONLY, Kind.FULL, Kind.LOCKED)
    can_corrupt = True

    def __init__(self, tmp_path: Path, request: pytest.FixtureRequest) -> None:
        super().__init__(tmp_path, request)
        self.schema = f"conformance_{next(_schemas)}"

    def open(self, label_window: float = 7 * DAY, max_pending: int = 1000, name: str = "store") -> BaseJoinStore:
        from otel_ml.processor.store.postgres import PostgresJoinStore

        server = self.request.getfixturevalue("postgres_server")
        schema = self.schema if name == "store" else f"{self.schema}_{name}"
        return self.track(PostgresJoinStore(server.dsn(), label_window, max_pending, "test", schema=schema))

    def reopen(self, store: BaseJoinStore) -> BaseJoinStore:
        from otel_ml.processor.store.postgres import PostgresJoinStore

        assert isinstance(store, PostgresJoinStore)
        store.close()
        return self.track(PostgresJoinStore(store.dsn, store.label_window, store.max_pending, store.instance_id,
                                            schema=store.schema))

    def fault(self, kind: str) -> Fault:
        return PostgresFault(kind, self)

    def corrupt(self, store: BaseJoinStore, key: str) -> None:
        """Garbage in the key's stored payload, written by another session (the store sees it on its next read)."""
        import psycopg

        from otel_ml.processor.store.postgres import PostgresJoinStore

        assert isinstance(store, PostgresJoinStore)
        with psycopg.connect(store.dsn) as other:
            n = other.execute(f'UPDATE "{store.schema}".joins SET pred = CASE WHEN pred IS NULL THEN NULL ELSE '
                              "'\\x00ff13370d0a'::bytea END, label = CASE WHEN label IS NULL THEN NULL ELSE "
                              "'\\x00ff13370d0a'::bytea END WHERE k = %s AND joined IS NULL", (key,)).rowcount
        assert n == 1, f"no stored row for {key!r}"


BACKENDS: dict[str, type[StoreBackend]] = {"memory": MemoryBackend, "sqlite": SqliteBackend,
                                           "postgres": PostgresBackend}
"""Every backend the conformance suites run (a new backend adds its :class:`StoreBackend` here)."""
FAULT_CASES: list[tuple[str, str]] = [(name, kind) for name, cls in BACKENDS.items() for kind in cls.faults]
"""``(backend, kind)`` of every real fault a backend declares."""
CORRUPTIBLE: list[str] = [name for name, cls in BACKENDS.items() if cls.can_corrupt]
"""Backends whose stored records a test can damage."""
COUNTED_ONCE: list[str] = [name for name, cls in BACKENDS.items() if cls.gone_tombstones]
"""Backends with gone tombstones (a record re-sent after its counterpart left is a duplicate)."""
