"""The ``store:`` section (join store backend, location, windows, bounds) and :func:`dsn_without_password`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from otel_ml.processor.config.validation import ConfigError, _int, _section, parse_duration

DEFAULT_STORE_BACKEND: Final = "sqlite"
DEFAULT_STORE_PATH: Final = "./otel-ml-data/store.db"
DEFAULT_STORE_SCHEMA: Final = "otel_ml"
DEFAULT_LABEL_WINDOW_S: Final = 7 * 86400.0
DEFAULT_MAX_PENDING: Final = 20_000_000
DEFAULT_EXPIRE_INTERVAL_S: Final = 10.0
DEFAULT_REPLICA_TIMEOUT_S: Final = 300.0
DEFAULT_STORE_LOCK_TIMEOUT_S: Final = 5.0
BACKENDS: Final = ("sqlite", "postgres", "memory")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Join store (``store:``)."""

    backend: str = DEFAULT_STORE_BACKEND
    path: str = DEFAULT_STORE_PATH
    dsn: str = ""
    schema: str = DEFAULT_STORE_SCHEMA
    label_window: float = DEFAULT_LABEL_WINDOW_S
    max_pending: int = DEFAULT_MAX_PENDING
    expire_interval: float = DEFAULT_EXPIRE_INTERVAL_S
    replica_timeout: float = DEFAULT_REPLICA_TIMEOUT_S
    lock_timeout: float = DEFAULT_STORE_LOCK_TIMEOUT_S
    """SQLite: how long a step waits for a lock another process holds on the store before it fails (``locked``)."""


def _store(raw: Mapping[str, Any]) -> StoreConfig:
    ex = "store: {backend: sqlite, path: ./otel-ml-data/store.db, label_window: 7d, max_pending: 20000000}"
    pg_ex = 'store: {backend: postgres, dsn: "postgresql://otelml:${env:OTEL_ML_PG_PASSWORD}@db:5432/otelml"}'
    s = _section(raw, "store", {"backend", "path", "dsn", "schema", "label_window", "max_pending",
                                "expire_interval", "replica_timeout", "lock_timeout"}, ex)
    backend = s.get("backend", DEFAULT_STORE_BACKEND)
    if backend not in BACKENDS:
        raise ConfigError("store.backend", f"expected one of {', '.join(BACKENDS)}, got {backend!r}", ex)
    path = s.get("path", DEFAULT_STORE_PATH)
    if not isinstance(path, str) or not path:
        raise ConfigError("store.path", f"expected a file path, got {path!r}", ex)
    dsn = s.get("dsn", "")
    if backend == "postgres" and (not isinstance(dsn, str) or not dsn.strip()):
        raise ConfigError("store.dsn", f"required with backend postgres, got {dsn!r}", pg_ex)
    if not isinstance(dsn, str) or (dsn and not (re.match(r"^postgres(ql)?://", dsn) or "=" in dsn)):
        raise ConfigError("store.dsn", "expected a postgresql:// URL or a libpq key=value string", pg_ex)
    if dsn and backend != "postgres":
        raise ConfigError("store.dsn", f"only used with backend postgres (backend is {backend})", pg_ex)
    schema = s.get("schema", DEFAULT_STORE_SCHEMA)
    if not isinstance(schema, str) or not re.match(r"^[a-z_][a-z0-9_]{0,62}$", schema):
        raise ConfigError("store.schema", f"expected a lower-case SQL identifier, got {schema!r}",
                          "store: {backend: postgres, dsn: ..., schema: otel_ml}")
    return StoreConfig(
        backend=backend, path=path, dsn=dsn, schema=schema,
        label_window=parse_duration(s.get("label_window", DEFAULT_LABEL_WINDOW_S), "store.label_window", ex),
        max_pending=_int(s.get("max_pending", DEFAULT_MAX_PENDING), "store.max_pending", ex),
        expire_interval=parse_duration(s.get("expire_interval", DEFAULT_EXPIRE_INTERVAL_S), "store.expire_interval",
                                       "store: {expire_interval: 10s}"),
        replica_timeout=_replica_timeout(s),
        lock_timeout=parse_duration(s.get("lock_timeout", DEFAULT_STORE_LOCK_TIMEOUT_S), "store.lock_timeout",
                                    "store: {lock_timeout: 5s}"),
    )


def _replica_timeout(s: Mapping[str, Any]) -> float:
    ex = "store: {backend: postgres, dsn: ..., replica_timeout: 5m}"
    seconds = parse_duration(s.get("replica_timeout", DEFAULT_REPLICA_TIMEOUT_S), "store.replica_timeout", ex)
    if seconds < 3:  # replicas refresh their heartbeat with a commit every third of it, and commit every second
        raise ConfigError("store.replica_timeout", f"must be at least 3s, got {s.get('replica_timeout')!r}", ex)
    return seconds


def dsn_without_password(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL or key=value form): safe to log and to show in errors."""
    dsn = re.sub(r"^(postgres(?:ql)?://[^:/@?]*):[^@/?]*@", r"\1:***@", dsn)
    dsn = re.sub(r"(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", "password=***", dsn)
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", dsn)
