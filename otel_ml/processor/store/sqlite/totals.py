"""The persisted aggregate totals (read at start and at a resync, deleted when retired; undecodable ones
quarantined) and the pipeline's opaque state blobs. The totals are written by ``commit``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from otel_ml.processor.aggregates import Key, decode_attrs, encode_attrs
from otel_ml.processor.store.base import (
    Quarantined,
)
from otel_ml.processor.store.sqlite.connection import _STORAGE_ERRORS, SqliteConnection
from otel_ml.processor.store.sqlite.schema import _reason, _Undecodable


class SqliteTotals(SqliteConnection):
    """Aggregate totals and state blobs of :class:`~otel_ml.processor.store.sqlite.SqliteJoinStore`."""

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
