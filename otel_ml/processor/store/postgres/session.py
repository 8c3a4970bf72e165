"""A session with the store's settings: :func:`connect` (DSN parsing, ``connect_timeout`` defaulted, bounded waits,
the binary array dumpers registered), the error class :class:`PostgresStoreError` and the kind of a psycopg error
(:func:`error_kind`), the advisory lock keys, and small connection helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from otel_ml.processor.config import dsn_without_password
from otel_ml.processor.store.base import StorageError
from otel_ml.processor.store.postgres.arrays import _ByteaArray, _Float8Array, _Int2Array, _TextArray
from otel_ml.semconv.attributes import StoreErrorReason as Kind

if TYPE_CHECKING:
    import psycopg

STATEMENT_TIMEOUT: Final = "20s"
DEFAULT_LOCK_TIMEOUT_S: Final = 5.0
IDLE_TIMEOUT: Final = "60s"
CONNECT_TIMEOUT_S: Final = 5
_LOCK_CLASS_MIGRATE: Final = 0x6F6D0001
_LOCK_CLASS_LEADER: Final = 0x6F6D0002
_LOCK_CLASS_EVICT: Final = 0x6F6D0003
_LOCK_CLASS_ADOPT: Final = 0x6F6D0004
"""First key of the advisory locks (the second is ``hashtext(schema)``: one lock set per schema)."""


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


def _register_arrays(conn: psycopg.Connection[Any]) -> None:
    from psycopg.adapt import Dumper

    class _ArrayDumper(Dumper):
        format = _psycopg().pq.Format.BINARY

        def dump(self, obj: Any) -> bytes:
            return obj  # type: ignore[no-any-return]

    for cls in (_TextArray, _Float8Array, _ByteaArray, _Int2Array):
        conn.adapters.register_dumper(cls, type(f"{cls.__name__}Dumper", (_ArrayDumper,), {"oid": cls.oid}))


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


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _close(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # already broken
            pass
