"""Join stores: the :class:`~otel_ml.processor.store.base.JoinStore` contract and its backends."""

from __future__ import annotations

from otel_ml.processor.config import StoreConfig
from otel_ml.processor.store.base import DONE, BaseJoinStore, IngestResult, JoinStore
from otel_ml.processor.store.memory import MemoryJoinStore
from otel_ml.processor.store.sqlite import SqliteJoinStore

__all__ = ["DONE", "BaseJoinStore", "IngestResult", "JoinStore", "MemoryJoinStore", "SqliteJoinStore", "open_store"]


def open_store(config: StoreConfig, instance_id: str = "") -> BaseJoinStore:
    """The backend named by ``config.backend`` (``instance_id`` keys a replica's totals in a shared store).

    Raises:
        StoreError: The store cannot be opened (unreadable format, database unreachable, failed migration).
    """
    if config.backend == "memory":
        return MemoryJoinStore(config.label_window, config.max_pending)
    if config.backend == "postgres":
        from otel_ml.processor.store.postgres import PostgresJoinStore  # psycopg is imported only when used

        return PostgresJoinStore(config.dsn, config.label_window, config.max_pending,
                                 instance_id or "otel-ml-processor", schema=config.schema,
                                 lock_timeout=config.lock_timeout, replica_timeout=config.replica_timeout)
    return SqliteJoinStore(config.path, config.label_window, config.max_pending, lock_timeout=config.lock_timeout)
