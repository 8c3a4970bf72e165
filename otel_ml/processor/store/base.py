"""The join store contract (:class:`JoinStore`) and the join logic every backend shares (:class:`BaseJoinStore`).

Contract (checked by ``tests/processor/test_store_conformance.py`` for every backend):

* ``ingest(predictions, labels, now)`` inside the current transaction: a prediction meets a pending label (labels can
  overtake predictions) or waits; a label meets a pending prediction or waits; a *pair* (a prediction carrying its
  label) joins at once. Duplicates are idempotent: a prediction id (per model) or label seen before, pending or
  already joined, changes nothing and is reported as a duplicate. Joined keys are remembered (as *tombstones*) for
  the label window, so a re-sent request never joins or counts twice within it.
* ``ingest_many(batches, now)``: the ``ingest`` of several batches (the requests of one group commit) in order, each
  with its own result, with one lookup and one write for the group; eviction runs once, after the last batch.
* ``expire(now)``: pending records older than the label window (by arrival time) leave the store: predictions are
  returned as expired (never labeled), labels as orphaned. Tombstones older than the window are dropped.
* Bounded size: when more than ``max_pending`` records are pending, the oldest are evicted in the same transaction
  and returned as evicted.
* ``commit(totals)`` persists the changed cumulative metric aggregates and commits everything since the last commit
  atomically; ``rollback()`` discards it. ``load_aggregates()`` returns the persisted totals (restart).
* Time comes from the caller (injectable clock); single writer: not thread-safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from otel_ml.processor.aggregates import Key
from otel_ml.processor.records import ARRIVED, L_TS, LABEL_START, TASK, K, Row, join_rows

DONE = object()
"""Lookup result of a key that was already joined (a tombstone)."""


@dataclass(slots=True)
class IngestResult:
    """What one ``ingest`` call did.

    Attributes:
        new_predictions: Indexes (into the ``predictions`` argument) of predictions accepted for the first time.
        new_labels: Indexes of labels accepted for the first time.
        joined: Joined rows (prediction half + label half), in this step.
        duplicates: Records ignored as already seen.
        evicted: Pending rows evicted to respect ``max_pending``.
    """

    new_predictions: list[int] = field(default_factory=list)
    new_labels: list[int] = field(default_factory=list)
    joined: list[Row] = field(default_factory=list)
    duplicates: int = 0
    evicted: list[Row] = field(default_factory=list)


class JoinStore(Protocol):
    """Durable prediction-label join (see the module docstring for the contract)."""

    label_window: float
    max_pending: int

    def ingest(self, predictions: Sequence[Row], labels: Sequence[Row], now: float) -> IngestResult:
        """Insert and join records (inside the current transaction)."""

    def ingest_many(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], now: float) -> list[IngestResult]:
        """``ingest`` of several ``(predictions, labels)`` batches in order (eviction once, after the last)."""

    def expire(self, now: float) -> list[Row]:
        """Remove and return pending rows older than the label window (inside the current transaction)."""

    def commit(self, totals: Mapping[Key, float]) -> None:
        """Persist ``totals`` and commit the transaction."""

    def rollback(self) -> None:
        """Discard everything since the last commit."""

    def load_aggregates(self) -> dict[Key, float]:
        """Persisted aggregate totals."""

    def put_state(self, key: str, value: bytes) -> None:
        """Store an opaque blob (small processor state, e.g. the ROC-AUC windows) in the current transaction."""

    def load_state(self) -> dict[str, bytes]:
        """Persisted state blobs."""

    def pending(self) -> int:
        """Records waiting for their counterpart."""

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record."""

    def close(self) -> None:
        """Release resources (uncommitted work is discarded)."""


class BaseJoinStore(ABC):
    """Join logic over a few storage primitives; backends implement the primitives."""

    def __init__(self, label_window: float, max_pending: int) -> None:
        self.label_window = label_window
        self.max_pending = max_pending

    # --- primitives ------------------------------------------------------------------------------------------------
    @abstractmethod
    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:
        """Pending rows (as rows) and tombstones (as :data:`DONE`) for ``keys``; absent keys are omitted."""

    @abstractmethod
    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], tombstones: Sequence[str], now: float) -> None:
        """Insert pending rows; turn the ``deletes`` into tombstones; add new ``tombstones`` (all joined at ``now``).

        ``deletes`` are keys the preceding :meth:`_lookup` found pending (joined now); ``tombstones`` are keys joined
        now that have no stored row (pairs, and records that arrived and joined in this call).
        """

    @abstractmethod
    def _pop_oldest(self, limit: int, before: float | None) -> tuple[list[Row], int]:
        """Remove up to ``limit`` oldest pending rows (only those arrived before ``before`` if given).

        Returns the removed pending rows and how many entries were removed (a backend that keeps tombstones in the
        same order may remove more entries than it returns rows; the caller continues while that equals ``limit``).
        """

    @abstractmethod
    def _drop_done(self, before: float, keep_at_most: int) -> None:
        """Drop tombstones older than ``before`` and the oldest beyond ``keep_at_most``."""

    @abstractmethod
    def pending(self) -> int:
        """Records waiting for their counterpart."""

    @abstractmethod
    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record."""

    @abstractmethod
    def commit(self, totals: Mapping[Key, float]) -> None:
        """Persist ``totals`` and commit the transaction."""

    @abstractmethod
    def rollback(self) -> None:
        """Discard everything since the last commit."""

    @abstractmethod
    def load_aggregates(self) -> dict[Key, float]:
        """Persisted aggregate totals."""

    @abstractmethod
    def put_state(self, key: str, value: bytes) -> None:
        """Store an opaque blob in the current transaction (replaces the previous one of ``key``)."""

    @abstractmethod
    def load_state(self) -> dict[str, bytes]:
        """Persisted state blobs."""

    @abstractmethod
    def close(self) -> None:
        """Release resources (uncommitted work is discarded)."""

    # --- logic -----------------------------------------------------------------------------------------------------
    def ingest(self, predictions: Sequence[Row], labels: Sequence[Row], now: float) -> IngestResult:
        """See :class:`JoinStore`."""
        return self.ingest_many([(predictions, labels)], now)[0]

    def ingest_many(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], now: float) -> list[IngestResult]:
        """:meth:`ingest` of several batches in order, with one lookup and one write for all of them.

        Each batch's result is what ``ingest`` of the batches one after another would return, except that eviction
        runs once, after the last batch (its evicted rows are reported in the last result).
        """
        keys = list({row[K] for predictions, labels in batches for rows in (predictions, labels) for row in rows})
        joins = _Joins(self._lookup(keys) if keys else {})
        results = [joins.batch(predictions, labels) for predictions, labels in batches]
        self._write(list(joins.inserts.values()), joins.deletes, joins.tombstones, now)
        over = self.pending() - self.max_pending
        if over > 0 and results:
            results[-1].evicted = self._pop_oldest(over, None)[0]
        return results

    def expire(self, now: float) -> list[Row]:
        """See :class:`JoinStore`."""
        cutoff = now - self.label_window
        expired: list[Row] = []
        while True:
            chunk, removed = self._pop_oldest(1000, cutoff)
            expired.extend(chunk)
            if removed < 1000:
                break
        self._drop_done(cutoff, max(self.max_pending, 1))
        return expired


def label_half(row: Row) -> Row:
    """The label columns of a row."""
    return row[LABEL_START:]


def arrival(row: Row) -> float:
    """Arrival time of a row."""
    return float(row[ARRIVED])


class _Joins:
    """The join decisions of one :meth:`BaseJoinStore.ingest_many` call over the looked-up ``state``."""

    __slots__ = ("deletes", "inserts", "state", "tombstones")

    def __init__(self, state: dict[str, object]) -> None:
        self.state = state
        self.inserts: dict[str, Row] = {}
        self.deletes: list[str] = []
        self.tombstones: list[str] = []

    def batch(self, predictions: Sequence[Row], labels: Sequence[Row]) -> IngestResult:
        """Join one batch (its predictions first, then its labels) against the state so far."""
        result = IngestResult()
        self._predictions(predictions, result)
        self._labels(labels, result)
        return result

    def _finish(self, key: str) -> None:
        """``key`` joined: its pending row (written in this call or stored before) becomes a tombstone."""
        if self.inserts.pop(key, None) is None:
            self.deletes.append(key)
        else:
            self.tombstones.append(key)
        self.state[key] = DONE

    def _predictions(self, rows: Sequence[Row], result: IngestResult) -> None:
        state, inserts, tombstones = self.state, self.inserts, self.tombstones
        new, joined = result.new_predictions, result.joined
        for i, row in enumerate(rows):
            key = row[K]
            current = state.get(key)
            if current is None:
                new.append(i)
                if row[L_TS] is None:
                    inserts[key] = state[key] = row
                else:  # a pair: joined at once
                    joined.append(row)
                    state[key] = DONE
                    tombstones.append(key)
            elif current is DONE or current[TASK] is not None:  # type: ignore[index]
                result.duplicates += 1
            else:  # a pending label overtook this prediction (a pair keeps its own label)
                new.append(i)
                joined.append(row if row[L_TS] is not None else join_rows(row, current))  # type: ignore[arg-type]
                self._finish(key)

    def _labels(self, rows: Sequence[Row], result: IngestResult) -> None:
        state, inserts, deletes = self.state, self.inserts, self.deletes
        new, joined = result.new_labels, result.joined
        for i, row in enumerate(rows):
            key = row[K]
            current = state.get(key)
            if current is None:
                new.append(i)
                inserts[key] = state[key] = row
            elif current is DONE or current[TASK] is None:  # type: ignore[index]
                result.duplicates += 1
            else:
                new.append(i)
                joined.append(current[:LABEL_START] + row[LABEL_START:])  # type: ignore[index]  # join_rows inlined
                if inserts.pop(key, None) is None:  # self._finish(key) inlined (the hot path: one per join)
                    deletes.append(key)
                else:
                    self.tombstones.append(key)
                state[key] = DONE
