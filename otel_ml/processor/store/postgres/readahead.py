"""Steps 1 and 2 of a join (insert-or-lock a group's keys, read the rows of those that existed: :class:`_Plan`,
``_fetch``), and the read-ahead that runs them for the next group on the replica's second connection
(:meth:`~otel_ml.processor.store.postgres.PostgresJoinStore.prefetch`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from otel_ml.processor.records import ARRIVED, Row
from otel_ml.processor.store.base import _Joins
from otel_ml.processor.store.postgres.arrays import _Array, _byteas, _floats, _texts
from otel_ml.processor.store.postgres.rows import PostgresRows
from otel_ml.processor.store.postgres.session import PostgresStoreError, connect

if TYPE_CHECKING:
    import psycopg

_logger = logging.getLogger(__name__)


class _Prefetch:
    """Steps 1-2 of a group started ahead (:meth:`PostgresJoinStore.prefetch`) on its own connection."""

    __slots__ = ("batches", "conn", "future", "plan")

    def __init__(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], plan: _Plan,
                 future: Future[tuple[set[str], list[tuple[Any, ...]]]], conn: psycopg.Connection[Any]) -> None:
        self.batches, self.plan, self.future, self.conn = batches, plan, future, conn

    def matches(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]]) -> bool:
        """Whether ``batches`` hold the very same row lists."""
        return len(batches) == len(self.batches) and all(
            p is q and l_ is m for (p, l_), (q, m) in zip(batches, self.batches, strict=True))


class _Plan:
    """What a group's records write for each key if the store held nothing for it (the join logic over an empty
    state): pending rows (``ks[:n_new]``) and tombstones of records joined within the group (``ks[n_new:]``)."""

    __slots__ = ("arrivals", "joined_at", "ks", "labels", "n_new", "preds")

    def __init__(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], now: float) -> None:
        first = _Joins({})
        for predictions, labels in batches:
            first.batch(predictions, labels)
        new_rows = list(first.inserts.values())
        n_tomb = len(first.tombstones)
        self.n_new = len(new_rows)
        self.ks: list[str] = [r[0] for r in new_rows] + first.tombstones
        self.arrivals: list[float] = [r[ARRIVED] for r in new_rows] + [now] * n_tomb
        self.joined_at: list[float | None] = [None] * len(new_rows) + [now] * n_tomb
        halves = [PostgresRows._halves(r) for r in new_rows]
        self.preds: list[bytes | None] = [h[0] for h in halves] + [None] * n_tomb
        self.labels: list[bytes | None] = [h[1] for h in halves] + [None] * n_tomb

    def params(self, pick: Sequence[int]) -> tuple[_Array, ...]:
        """Parameters of the insert-or-lock statement for the keys at the indexes ``pick``."""
        if len(pick) == len(self.ks):
            return (_texts(self.ks), _floats(self.arrivals), _floats(self.joined_at), _byteas(self.preds),
                    _byteas(self.labels))
        return (_texts([self.ks[i] for i in pick]), _floats([self.arrivals[i] for i in pick]),
                _floats([self.joined_at[i] for i in pick]), _byteas([self.preds[i] for i in pick]),
                _byteas([self.labels[i] for i in pick]))


class PostgresReadAhead(PostgresRows):
    """Steps 1-2 and the read-ahead of :class:`~otel_ml.processor.store.postgres.PostgresJoinStore`."""

    def prefetch(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]]) -> bool:
        """Start steps 1-2 of the next group (:meth:`ingest_many` of the same ``batches`` in the next transaction)
        now, on the spare connection in the background, while this transaction is still open; True if started.

        The pipeline calls it once this transaction's joins are decided: the database inserts and locks the next
        group's keys while the processor computes this group's metrics and commits it. Keys this transaction holds
        go in a second statement, which waits for this transaction's ``COMMIT`` (or rollback) like another
        replica's would: their state is read only after it. Discarded by :meth:`rollback`.
        """
        if self._prefetched is not None or self._conn is None or self._conn.closed or self._needs_resync:
            return False
        plan = _Plan(batches, self.clock())
        if not plan.ks:
            return False
        spare = self._spare
        if spare is None or spare.closed:
            try:
                spare = self._spare = connect(self.dsn, self._app, self.lock_timeout)
            except PostgresStoreError as exc:
                _logger.debug("no second connection for reading ahead: %s", exc)
                return False
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="otel-ml-pg-ahead")
        held = self._txn_keys
        parts = ([i for i, k in enumerate(plan.ks) if k not in held], [i for i, k in enumerate(plan.ks) if k in held])
        future = self._pool.submit(self._fetch, spare, plan, parts, True)
        self._prefetched = _Prefetch(batches, plan, future, spare)
        return True

    def _take_prefetched(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]],
                         fresh: bool) -> _Prefetch | None:
        """The prefetch of exactly ``batches``, its connection made the current one (the idle current connection
        becomes the spare); None if there is none (a prefetch of other batches is discarded)."""
        ahead = self._prefetched
        if ahead is None:
            return None
        current = self._conn
        idle = current is None or current.closed or (
            current.info.transaction_status == self._psycopg.pq.TransactionStatus.IDLE)
        if not fresh or not idle or not ahead.matches(batches) or ahead.future.exception() is not None:
            self._discard_prefetch()  # a failed read-ahead (lock timeout, lost connection): this step reads itself
            return None
        self._prefetched = None
        self._conn, self._spare = ahead.conn, self._conn
        return ahead

    def _fetch(self, db: psycopg.Connection[Any], plan: _Plan, parts: Sequence[Sequence[int]],
               fresh: bool) -> tuple[set[str], list[tuple[Any, ...]]]:
        """Step 1 and 2 of the join: insert-or-lock the plan's keys, then read the rows of those that existed.

        ``parts``: indexes into ``plan.ks``, one statement each (every statement locks in key order). In a transaction
        that wrote nothing before (``fresh``), the read goes in the same round trip (psycopg pipeline) and skips the
        rows this transaction inserted by their ``xmin``; otherwise it reads the keys the inserts did not return.
        Returns the inserted keys and the stored rows ``(k, arrived, joined, pred, label, gone)``.
        """
        if fresh:
            with db.pipeline():
                cursors = [db.execute(self._sql_insert, plan.params(part), binary=True) for part in parts if part]
                read = db.execute(self._sql_existing, (_texts(plan.ks),), binary=True)
                inserted = {r[0] for c in cursors for r in c.fetchall()}
                return inserted, read.fetchall()
        inserted = set()
        for part in parts:
            if part:
                inserted.update(r[0] for r in db.execute(self._sql_insert, plan.params(part), binary=True).fetchall())
        if len(inserted) == len(plan.ks):
            return inserted, []
        rest = _texts([k for k in plan.ks if k not in inserted])
        return inserted, db.execute(self._sql_locked, (rest,), binary=True).fetchall()
