"""In-memory join store (not durable): tests, benchmarks, and setups that accept losing pending joins on restart.

Transactions are emulated with an undo log so ``rollback`` behaves like the SQLite backend's. Nothing here can fail
the way storage fails (no disk, no lock, no encoding), so the storage-fault cases of the conformance suite have no
fault to inject into this backend; its transaction semantics are checked by the rest of the suite.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from otel_ml.processor.aggregates import Key
from otel_ml.processor.records import ARRIVED, Row
from otel_ml.processor.store.base import DONE, BaseJoinStore, gone_marker


class MemoryJoinStore(BaseJoinStore):
    """Ordered dicts in arrival order; see :mod:`otel_ml.processor.store.base` for the contract."""

    def __init__(self, label_window: float, max_pending: int) -> None:
        super().__init__(label_window, max_pending)
        self._pending: OrderedDict[str, Row] = OrderedDict()
        self._done: OrderedDict[str, tuple[float, object]] = OrderedDict()
        """Tombstones: key -> (time, DONE / GONE_PREDICTION / GONE_LABEL), oldest first."""
        self._aggregates: dict[Key, float] = {}
        self._state: dict[str, bytes] = {}
        self._state_txn: dict[str, bytes] = {}
        self._undo: list[Callable[[], None]] = []

    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:
        out: dict[str, object] = {}
        for k in keys:
            row = self._pending.get(k)
            if row is not None:
                out[k] = row
            else:
                tomb = self._done.get(k)
                if tomb is not None:
                    out[k] = tomb[1]
        return out

    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], tombstones: Sequence[str], now: float) -> None:
        pending, done_map = self._pending, self._done
        for row in inserts:
            pending[row[0]] = row
        removed: list[Row] = []
        added: list[str] = []
        settled: list[tuple[str, tuple[float, object]]] = []
        for k in deletes:
            if k in pending:
                removed.append(pending.pop(k))
                added.append(k)
                done_map[k] = (now, DONE)
            else:  # a gone tombstone whose counterpart arrived late: keeps its place and time
                settled.append((k, done_map[k]))
                done_map[k] = (done_map[k][0], DONE)
        for k in tombstones:
            done_map[k] = (now, DONE)
        added.extend(tombstones)
        keys = [r[0] for r in inserts]

        def undo() -> None:
            for k in added:
                done_map.pop(k, None)
            for k, tomb in settled:
                done_map[k] = tomb
            for k in keys:
                pending.pop(k, None)
            if removed:  # put the joined rows back in arrival order (rollbacks are rare: O(n) is fine)
                for row in removed:
                    pending[row[0]] = row
                ordered = sorted(pending.values(), key=lambda r: r[ARRIVED])
                pending.clear()
                pending.update((r[0], r) for r in ordered)
        self._undo.append(undo)

    def _pop_oldest(self, limit: int, before: float | None) -> tuple[list[Row], int]:
        out: list[Row] = []
        while self._pending and len(out) < limit:
            row = next(iter(self._pending.values()))
            if before is not None and row[ARRIVED] >= before:
                break
            self._pending.popitem(last=False)
            out.append(row)
        if out:
            pending = self._pending

            def undo(rows: list[Row] = out) -> None:
                for r in reversed(rows):
                    pending[r[0]] = r
                    pending.move_to_end(r[0], last=False)
            self._undo.append(undo)
        return out, len(out)

    def _mark_gone(self, rows: Sequence[Row], now: float) -> None:
        done = self._done
        previous: list[tuple[str, Any]] = []
        for row in rows:
            k = row[0]
            previous.append((k, done.pop(k, None)))
            done[k] = (now, gone_marker(row))

        def undo() -> None:
            for k, tomb in reversed(previous):
                done.pop(k, None)
                if tomb is not None:
                    done[k] = tomb
        if rows:
            self._undo.append(undo)

    def _drop_done(self, before: float, keep_at_most: int) -> None:
        done = self._done
        dropped: list[tuple[str, tuple[float, object]]] = []
        while done:
            k, tomb = next(iter(done.items()))
            if tomb[0] >= before and len(done) <= keep_at_most:
                break
            done.popitem(last=False)
            dropped.append((k, tomb))

        def undo() -> None:
            for k, tomb in reversed(dropped):
                done[k] = tomb
                done.move_to_end(k, last=False)
        if dropped:
            self._undo.append(undo)

    def pending(self) -> int:
        """Records waiting for their counterpart."""
        return len(self._pending)

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record."""
        if not self._pending:
            return None
        return float(next(iter(self._pending.values()))[ARRIVED])

    def commit(self, totals: Mapping[Key, float]) -> None:
        """Keep ``totals`` and forget the undo log."""
        self._aggregates.update(totals)
        self._state.update(self._state_txn)
        self._state_txn.clear()
        self._undo.clear()

    def rollback(self) -> None:
        """Undo every change since the last commit."""
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        self._state_txn.clear()
        self._quarantined.clear()

    def delete_aggregates(self, keys: Sequence[Key]) -> None:
        """Remove totals (undone by :meth:`rollback`)."""
        removed = {key: self._aggregates.pop(key) for key in keys if key in self._aggregates}
        if removed:
            self._undo.append(lambda: self._aggregates.update(removed))

    def put_state(self, key: str, value: bytes) -> None:
        """Kept at the next commit."""
        self._state_txn[key] = bytes(value)

    def load_state(self) -> dict[str, bytes]:
        """Committed blobs (empty after a restart: this backend is not durable)."""
        return dict(self._state)

    def load_aggregates(self) -> dict[Key, float]:
        """Totals committed so far (empty after a restart: this backend is not durable)."""
        return dict(self._aggregates)

    def close(self) -> None:
        """Discard uncommitted work."""
        self.rollback()
