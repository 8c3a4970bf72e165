"""The join store contract (:class:`JoinStore`) and the join logic every backend shares (:class:`BaseJoinStore`).

Contract (checked by ``tests/processor/test_store_conformance.py`` for every backend, and by
``tests/processor/test_store_faults.py`` under real storage faults):

* ``ingest(predictions, labels, now)`` inside the current transaction: a prediction meets a pending label (labels can
  overtake predictions) or waits; a label meets a pending prediction or waits; a *pair* (a prediction carrying its
  label) joins at once. Duplicates are idempotent: a prediction id (per model) or label seen before, pending or
  already joined, changes nothing and is reported as a duplicate. Joined keys are remembered (as *tombstones*) for
  the label window, so a re-sent request never joins or counts twice within it.
* Counted once, also after a record left: a pending record that expires or is evicted leaves a *gone* tombstone of
  its half for a label window (from the time it left). The same record again is a duplicate; its counterpart
  arriving later is new but can never join: it is reported in :attr:`IngestResult.late` (the pipeline counts a late
  prediction as expired and a late label as orphaned at once) and the key becomes a join tombstone. Every tombstone
  kind shares one bound: at most ``max(max_pending, 1)`` tombstones are kept (the oldest dropped first).
* ``ingest_many(batches, now)``: the ``ingest`` of several batches (the requests of one group commit) in order, each
  with its own result, with one lookup and one write for the group; eviction runs once, after the last batch.
* ``expire(now)``: pending records older than the label window (by arrival time) leave the store: predictions are
  returned as expired (never labeled), labels as orphaned. Tombstones older than the window are dropped.
* Bounded size: when more than ``max_pending`` records are pending, the oldest are evicted in the same transaction
  and returned as evicted.
* ``commit(totals)`` persists the changed cumulative metric aggregates and commits everything since the last commit
  atomically; ``rollback()`` discards it. ``load_aggregates()`` returns the persisted totals (restart).
* Time comes from the caller (injectable clock); single writer: not thread-safe.

Transactions and storage errors (the state machine every backend implements)::

    IDLE --first read/write of a step--> ACTIVE --commit()--> IDLE
                                         ACTIVE --rollback()--> IDLE
    any state --storage failure--> (rolled back, counters restored) IDLE, or BROKEN for failures that need a new
                                   connection (I/O, read-only, corruption, lost server)
    BROKEN --next step, at most once per reopen interval--> reopen --> IDLE (or still BROKEN: fails again)

* Every storage failure surfaces as :class:`StorageError` with its :attr:`~StorageError.kind` (a
  :class:`~otel_ml.semconv.attributes.StoreErrorReason` value), raised only after the store is back in a known
  state: the transaction is rolled back (a rollback the database already did itself, as SQLite does on a full
  disk, an I/O error or an allocation failure, is tolerated), in-memory counters are restored, and a connection
  that cannot be trusted is closed. The failure is counted once (:meth:`BaseJoinStore.take_errors`). After a
  failed ``COMMIT`` (whose outcome an fsync failure or a lost connection leaves unknown),
  :meth:`BaseJoinStore.needs_resync` is true until :meth:`~JoinStore.load_aggregates` re-reads the totals.
* ``rollback()`` never raises and does nothing outside a transaction; the next step begins a fresh transaction.
* Nothing is written outside a transaction: a backend checks, before each write, that its transaction is open
  (SQLite: ``Connection.in_transaction``) and raises :class:`StorageError` otherwise; a write is never
  autocommitted piece by piece. A request is acknowledged only after ``commit()`` returned.
* A lock held by another process is waited for up to the backend's lock timeout, then fails with kind ``locked``.

Quarantine: a stored record that cannot be decoded (a corrupted row) is moved aside in the current transaction (the
backend's quarantine: key, raw bytes, reason, time), omitted from lookups, expiry and eviction, and reported once by
:meth:`BaseJoinStore.take_quarantined`; its key accepts new records and nothing else is blocked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from otel_ml.errors import StoreError
from otel_ml.processor.aggregates import Key
from otel_ml.processor.records import ARRIVED, L_TS, LABEL_START, TASK, K, Row, join_rows

DONE = object()
"""Lookup result of a key that was already joined (a tombstone)."""
GONE_PREDICTION = object()
"""Lookup result of a key whose prediction expired or was evicted unjoined (a *gone* tombstone)."""
GONE_LABEL = object()
"""Lookup result of a key whose label expired or was evicted unjoined (a *gone* tombstone)."""


class StorageError(StoreError):
    """A store operation failed; the store is back in a known state (no transaction open) and the step may be retried.

    Attributes:
        kind: Why, as a :class:`~otel_ml.semconv.attributes.StoreErrorReason` value (``full``, ``io``, ``nomem``,
            ``locked``, ``readonly``, ``corrupt``, ``unavailable``, ``other``).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"join store unavailable ({kind}): {message}")
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A stored record moved to the quarantine because it could not be decoded."""

    key: str
    reason: str


@dataclass(slots=True)
class IngestResult:
    """What one ``ingest`` call did.

    Attributes:
        new_predictions: Indexes (into the ``predictions`` argument) of predictions accepted for the first time.
        new_labels: Indexes of labels accepted for the first time.
        joined: Joined rows (prediction half + label half), in this step.
        duplicates: Records ignored as already seen.
        evicted: Pending rows evicted to respect ``max_pending``.
        late: New records (also in ``new_predictions`` / ``new_labels``) whose counterpart already left the store
            unjoined (expired or evicted): they can never join; a late prediction counts as expired, a late label
            as orphaned.
    """

    new_predictions: list[int] = field(default_factory=list)
    new_labels: list[int] = field(default_factory=list)
    joined: list[Row] = field(default_factory=list)
    duplicates: int = 0
    evicted: list[Row] = field(default_factory=list)
    late: list[Row] = field(default_factory=list)


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
        """Discard everything since the last commit (never raises)."""

    def load_aggregates(self) -> dict[Key, float]:
        """Persisted aggregate totals."""

    def delete_aggregates(self, keys: Sequence[Key]) -> None:
        """Remove aggregate totals (series of values that lost their cardinality slot) in the current transaction."""

    def put_state(self, key: str, value: bytes) -> None:
        """Store an opaque blob (small processor state, e.g. the ROC-AUC windows) in the current transaction."""

    def load_state(self) -> dict[str, bytes]:
        """Persisted state blobs."""

    def pending(self) -> int:
        """Records waiting for their counterpart."""

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record."""

    def take_errors(self) -> dict[str, int]:
        """Storage failures by kind since the last call."""

    def needs_resync(self) -> bool:
        """Whether a ``COMMIT`` failed with an unknown outcome: reload the totals before the next step."""

    def take_quarantined(self) -> list[Quarantined]:
        """Records quarantined in the current transaction since the last call."""

    def close(self) -> None:
        """Release resources (uncommitted work is discarded)."""


class BaseJoinStore(ABC):
    """Join logic over a few storage primitives; backends implement the primitives."""

    def __init__(self, label_window: float, max_pending: int) -> None:
        self.label_window = label_window
        self.max_pending = max_pending
        self._errors: Counter[str] = Counter()
        self._quarantined: list[Quarantined] = []
        self._needs_resync = False
        self.strict_decoding = False
        """Check the type of every column of each stored row read, not only its length and kind (the hot path).

        A damaged row can still decode to a tuple of the right length with a value of the wrong type, which would
        make the step fail further on; the writer sets this while it retries a request that failed for no storage
        reason, so that such a row is quarantined instead of failing its key again and again.
        """

    # --- primitives ------------------------------------------------------------------------------------------------
    @abstractmethod
    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:
        """Pending rows (as rows) and tombstones (:data:`DONE`, :data:`GONE_PREDICTION`, :data:`GONE_LABEL`) for
        ``keys``; absent keys are omitted. A stored row that cannot be decoded is quarantined and omitted.
        """

    @abstractmethod
    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], tombstones: Sequence[str], now: float) -> None:
        """Insert pending rows; turn the ``deletes`` into join tombstones; add join ``tombstones`` (joined at ``now``).

        ``deletes`` are keys the preceding :meth:`_lookup` found pending (joined now) or as a gone tombstone (their
        counterpart arrived late); ``tombstones`` are keys joined now that have no stored row (pairs, and records
        that arrived and joined in this call).
        """

    @abstractmethod
    def _pop_oldest(self, limit: int, before: float | None) -> tuple[list[Row], int]:
        """Remove up to ``limit`` oldest pending rows (only those arrived before ``before`` if given).

        Returns the removed pending rows and how many entries were removed (a backend that keeps tombstones in the
        same order may remove more entries than it returns rows; the caller continues while that equals ``limit``).
        Rows that cannot be decoded are quarantined and not returned.
        """

    @abstractmethod
    def _mark_gone(self, rows: Sequence[Row], now: float) -> None:
        """Leave a gone tombstone (:data:`GONE_PREDICTION` or :data:`GONE_LABEL`, by the row's half) for each of
        ``rows``, just removed by :meth:`_pop_oldest`, dated ``now`` (they expire a label window later)."""

    @abstractmethod
    def _drop_done(self, before: float, keep_at_most: int) -> None:
        """Drop tombstones (of every kind) older than ``before`` and the oldest beyond ``keep_at_most``."""

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
        """Discard everything since the last commit (never raises; nothing to do outside a transaction)."""

    @abstractmethod
    def load_aggregates(self) -> dict[Key, float]:
        """Persisted aggregate totals."""

    def delete_aggregates(self, keys: Sequence[Key]) -> None:
        """Remove aggregate totals in the current transaction (series retired by the cardinality caps).

        Backends override it; this default raises ``NotImplementedError`` and the processor then only forgets the
        series in memory (they come back after a restart, and retire again when still idle).
        """
        raise NotImplementedError

    @abstractmethod
    def put_state(self, key: str, value: bytes) -> None:
        """Store an opaque blob in the current transaction (replaces the previous one of ``key``)."""

    @abstractmethod
    def load_state(self) -> dict[str, bytes]:
        """Persisted state blobs."""

    @abstractmethod
    def close(self) -> None:
        """Release resources (uncommitted work is discarded)."""

    # --- errors and quarantine -------------------------------------------------------------------------------------
    def take_errors(self) -> dict[str, int]:
        """Storage failures by kind since the last call (the pipeline counts them in ``ml.processor.store.errors``)."""
        errors, self._errors = dict(self._errors), Counter()
        return errors

    def take_quarantined(self) -> list[Quarantined]:
        """Records quarantined in the current transaction since the last call (counted and logged once committed)."""
        out, self._quarantined = self._quarantined, []
        return out

    def needs_resync(self) -> bool:
        """Whether a ``COMMIT`` failed with an unknown outcome (it may have been durable after all): the pipeline
        reloads the committed totals (:meth:`load_aggregates`, which clears this) before its next step."""
        return self._needs_resync

    def _count_error(self, kind: str) -> None:
        """Count one storage failure of ``kind`` (backends call it once per failure they raise)."""
        self._errors[kind] += 1

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
            evicted = self._pop_oldest(over, None)[0]
            self._mark_gone(evicted, now)
            results[-1].evicted = evicted
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
        self._mark_gone(expired, now)
        self._drop_done(cutoff, max(self.max_pending, 1))
        return expired


def label_half(row: Row) -> Row:
    """The label columns of a row."""
    return row[LABEL_START:]


def arrival(row: Row) -> float:
    """Arrival time of a row."""
    return float(row[ARRIVED])


def gone_marker(row: Row) -> object:
    """The gone tombstone a pending ``row`` leaves: :data:`GONE_PREDICTION` or :data:`GONE_LABEL`."""
    return GONE_LABEL if row[TASK] is None else GONE_PREDICTION


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
            elif current is DONE or current is GONE_PREDICTION:  # seen before
                result.duplicates += 1
            elif current is GONE_LABEL:  # its label left unjoined: new, but it can never join
                new.append(i)
                if row[L_TS] is None:
                    result.late.append(row)
                else:  # a pair carries its own label
                    joined.append(row)
                self.deletes.append(key)
                state[key] = DONE
            elif current[TASK] is not None:  # type: ignore[index]  # a pending prediction: seen before
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
            elif current is DONE or current is GONE_LABEL:  # seen before
                result.duplicates += 1
            elif current is GONE_PREDICTION:  # its prediction left unjoined: new, but it can never join
                new.append(i)
                result.late.append(row)
                deletes.append(key)
                state[key] = DONE
            elif current[TASK] is None:  # type: ignore[index]  # a pending label: seen before
                result.duplicates += 1
            else:
                new.append(i)
                joined.append(current[:LABEL_START] + row[LABEL_START:])  # type: ignore[index]  # join_rows inlined
                if inserts.pop(key, None) is None:  # self._finish(key) inlined (the hot path: one per join)
                    deletes.append(key)
                else:
                    self.tombstones.append(key)
                state[key] = DONE
