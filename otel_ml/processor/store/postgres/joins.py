"""The join: :meth:`~PostgresJoinStore.ingest_many` (steps 1-3 of the module docstring of
:mod:`otel_ml.processor.store.postgres`), the decisions over the locked rows with their tombstones deferred to the
commit; and :class:`PostgresJoinStore`, assembled from the connection, read-ahead, expiry and totals parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_ml.processor.records import Row
from otel_ml.processor.store.base import DONE, GONE_LABEL, GONE_PREDICTION, IngestResult, _Joins
from otel_ml.processor.store.postgres.arrays import _texts
from otel_ml.processor.store.postgres.expiry import PostgresExpiry
from otel_ml.processor.store.postgres.readahead import PostgresReadAhead, _Plan
from otel_ml.processor.store.postgres.totals import PostgresTotals


class PostgresJoinStore(PostgresReadAhead, PostgresExpiry, PostgresTotals):
    """The shared backend (see the module docstring). One instance per replica; not thread-safe (one writer)."""

    # --- join ------------------------------------------------------------------------------------------------------
    def ingest_many(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], now: float) -> list[IngestResult]:
        """See :class:`~otel_ml.processor.store.base.JoinStore` and the module docstring (steps 1-3)."""
        fresh = not self._wrote  # nothing written by this transaction yet: one round trip suffices (see _fetch)
        ahead = self._take_prefetched(batches, fresh)
        self._wrote = True
        with self._guard("ingest"):
            if ahead is not None:  # this group's reads ran on the spare connection, now this transaction's
                inserted, stored = ahead.future.result()
                return self._decide(batches, ahead.plan, inserted, stored, now)
            db = self._db()
            self._flush()
            plan = _Plan(batches, now)
            if not plan.ks:
                return [IngestResult() for _ in batches]
            inserted, stored = self._fetch(db, plan, [range(len(plan.ks))], fresh)
            return self._decide(batches, plan, inserted, stored, now)

    def _decide(self, batches: Sequence[tuple[Sequence[Row], Sequence[Row]]], plan: _Plan, inserted: set[str],
                stored: list[tuple[Any, ...]], now: float) -> list[IngestResult]:
        """Step 3: the join decisions over the locked stored rows (quarantining undecodable ones), tombstones
        deferred to the commit, count deltas, eviction."""
        state: dict[str, object] = {}
        bad: list[tuple[str, bytes | None, bytes | None, str]] = []
        for k, arrived, joined, pred, label, gone in stored:
            if k in inserted:  # a row this statement inserted (read back only when not filtered by xmin)
                continue
            if joined is not None:
                state[k] = DONE if gone is None else GONE_PREDICTION if gone == 1 else GONE_LABEL
                continue
            try:
                state[k] = self._row(k, arrived, pred, label)
            except ValueError as exc:
                bad.append((k, pred, label, str(exc)))
        if bad:  # moved aside; their keys take this step's records as if they had never been stored
            self._quarantine(bad)
            self._dpending -= len(bad)
            redo = {b[0] for b in bad}
            self._db().execute(self._sql_insert, plan.params([i for i, k in enumerate(plan.ks) if k in redo]))
            inserted |= redo
        self._txn_keys.update(plan.ks)
        stored_pending = {k for k, v in state.items() if type(v) is tuple}  # _Joins marks them DONE as it goes
        joins = _Joins(state)
        results = [joins.batch(predictions, labels) for predictions, labels in batches]
        if joins.deletes:  # sent with the commit (one round trip less); flushed first by any read that needs it
            self._deferred.append((self._sql_tombstone, (now, _texts(joins.deletes))))
        mine_pending = sum(1 for k in plan.ks[:plan.n_new] if k in inserted)
        was_pending = sum(1 for k in joins.deletes if k in stored_pending)
        self._dpending += mine_pending - was_pending
        self._ddone += (len(inserted) - mine_pending) + was_pending
        self._now = now
        self._evict(results)
        return results

    # --- primitives (expiry, eviction, tombstone bound) -------------------------------------------------------------
    def _lookup(self, keys: Sequence[str]) -> dict[str, object]:  # pragma: no cover - ingest_many is overridden
        raise NotImplementedError

    def _write(self, inserts: Sequence[Row], deletes: Sequence[str], tombstones: Sequence[str],
               now: float) -> None:  # pragma: no cover - ingest_many is overridden
        raise NotImplementedError
