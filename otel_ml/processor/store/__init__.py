"""Join stores: the :class:`~otel_ml.processor.store.base.JoinStore` contract and its backends."""

from __future__ import annotations

from otel_ml.processor.config import StoreConfig
from otel_ml.processor.store.base import DONE, BaseJoinStore, IngestResult, JoinStore
from otel_ml.processor.store.memory import MemoryJoinStore
from otel_ml.processor.store.sqlite import SqliteJoinStore

__all__ = ["DONE", "BaseJoinStore", "IngestResult", "JoinStore", "MemoryJoinStore", "SqliteJoinStore", "open_store"]


def open_store(config: StoreConfig) -> BaseJoinStore:
    """The backend named by ``config.backend``."""
    if config.backend == "memory":
        return MemoryJoinStore(config.label_window, config.max_pending)
    return SqliteJoinStore(config.path, config.label_window, config.max_pending)
