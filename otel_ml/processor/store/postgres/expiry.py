"""Expiry, eviction and the tombstone bound: the leader election (a session-level advisory lock), removing the
oldest rows with ``FOR UPDATE SKIP LOCKED`` (pending ones become gone tombstones), the eviction of the overage once
under a transaction-level lock, and the store's pending count and oldest arrival.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from otel_ml.processor.records import Row
from otel_ml.processor.store.base import IngestResult
from otel_ml.processor.store.postgres.rows import PostgresRows
from otel_ml.processor.store.postgres.session import _LOCK_CLASS_EVICT, _LOCK_CLASS_LEADER

_logger = logging.getLogger(__name__)


class PostgresExpiry(PostgresRows):
    """Expiry, eviction and counts of :class:`~otel_ml.processor.store.postgres.PostgresJoinStore`."""

    def _evict(self, results: list[IngestResult]) -> None:
        if not results:
            return
        if self._pending_base is None or self.clock() - self._pending_read_at > 1.0:
            self._pending_base = self._count("pending") - self._dpending  # others' commits, refreshed every second
            self._pending_read_at = self.clock()
        if self._pending_base + self._dpending <= self.max_pending:
            return
        db = self._db()
        got = db.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                         (_LOCK_CLASS_EVICT, self.schema)).fetchone()
        if not got or not got[0]:
            return  # another replica is evicting the overage right now
        over = self._count("pending") - self.max_pending  # re-read: the statement sees every commit before the lock
        if over > 0:
            results[-1].evicted = self._pop_oldest(over, None)[0]

    def _count(self, column: str) -> int:
        row = self._db().execute(f"SELECT coalesce(sum({column}), 0)::bigint FROM {self._s}.counts").fetchone()
        return int(row[0] if row else 0) + (self._dpending if column == "pending" else self._ddone)

    def _pop_oldest(self, limit: int, before: float | None) -> tuple[list[Row], int]:
        """Take up to ``limit`` oldest entries: pending rows become gone tombstones dated ``self._now`` (eviction:
        pending rows only; expiry: everything that arrived before ``before``, whose tombstones are deleted)."""
        s = self._s
        db = self._db()
        self._flush()
        if before is None:
            rows = db.execute(f"SELECT k, arrived, joined, pred, label FROM {s}.joins WHERE joined IS NULL "
                              "ORDER BY arrived, k LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
        else:
            rows = db.execute(f"SELECT k, arrived, joined, pred, label FROM {s}.joins WHERE arrived < %s "
                              "ORDER BY arrived, k LIMIT %s FOR UPDATE SKIP LOCKED", (before, limit)).fetchall()
        if not rows:
            return [], 0
        tombs = [r[0] for r in rows if r[2] is not None]
        live: list[Row] = []
        gone_keys: list[str] = []
        gone_kinds: list[int] = []
        bad: list[tuple[str, bytes | None, bytes | None, str]] = []
        for k, arrived, _, pred, label in (r for r in rows if r[2] is None):
            try:
                live.append(self._row(k, arrived, pred, label))
            except ValueError as exc:
                bad.append((k, pred, label, str(exc)))
                continue
            gone_keys.append(k)
            gone_kinds.append(1 if pred is not None else 2)
        if tombs:
            db.execute(f"DELETE FROM {s}.joins WHERE k = ANY(%b::text[])", (tombs,))
        if gone_keys:  # counted once, also after leaving: the key keeps a tombstone of the half that left
            db.execute(f"UPDATE {s}.joins AS t SET arrived = %b, joined = %b, gone = g.kind, pred = NULL, "
                       "label = NULL FROM unnest(%b::text[], %b::int2[]) AS g(k, kind) WHERE t.k = g.k",
                       (self._now, self._now, gone_keys, gone_kinds))
        if bad:
            self._quarantine(bad)
        self._dpending -= len(live) + len(bad)
        self._ddone += len(gone_keys) - len(tombs)
        return live, len(rows)

    def _mark_gone(self, rows: Sequence[Row], now: float) -> None:
        """Nothing to do: :meth:`_pop_oldest` turned the rows into gone tombstones in place (one UPDATE)."""

    def _drop_done(self, before: float, keep_at_most: int) -> None:
        self._flush()
        over = self._count("done") - keep_at_most
        if over > 0:
            s = self._s
            cur = self._db().execute(
                f"DELETE FROM {s}.joins WHERE k IN (SELECT k FROM {s}.joins WHERE joined IS NOT NULL "
                "ORDER BY arrived, k LIMIT %s FOR UPDATE SKIP LOCKED)", (over,))
            self._ddone -= max(cur.rowcount, 0)

    def is_leader(self) -> bool:
        """Whether this replica holds the store's sweep (expiry, tombstone bound); tries to take it when free."""
        if self._leader_conn is None or self._leader_conn.closed:
            self._leader_conn = None
            with self._guard("leader election"):
                db = self._db()
                row = db.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))",
                                 (_LOCK_CLASS_LEADER, self.schema)).fetchone()
                if row and row[0]:
                    self._leader_conn = db
                    _logger.info("join store: this replica (%s) now runs the expiry sweep", self.instance_id)
        return self._leader_conn is not None

    def expire(self, now: float) -> list[Row]:
        """Expiry on the leader only (other replicas return ``[]``); see the base class."""
        if not self.is_leader():
            return []
        self._wrote = True
        self._now = now
        with self._guard("expiry"):
            return super().expire(now)

    def pending(self) -> int:
        """Records waiting for their counterpart in the whole store (every replica's commits + this transaction)."""
        with self._guard("count"):
            return self._count("pending")

    def oldest_pending_arrival(self) -> float | None:
        """Arrival time of the oldest pending record in the store (a cursor skips the tombstones already seen)."""
        with self._guard("oldest pending"):
            self._flush()
            row = self._db().execute(f"SELECT arrived FROM {self._s}.joins WHERE joined IS NULL AND arrived >= %s "
                                     "ORDER BY arrived LIMIT 1", (self._head,)).fetchone()
        if row is None:
            return None
        self._head = float(row[0])
        return self._head
