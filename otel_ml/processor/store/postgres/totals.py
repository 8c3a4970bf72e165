"""This replica's counters in the store: the commit (deferred tombstones, aggregate totals, count deltas, the
heartbeat in ``instances``), the persisted totals and state blobs, and the adopter of gone replicas' totals.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence

from otel_ml.processor.aggregates import Key, decode_attrs, encode_attrs
from otel_ml.processor.store.postgres.adopter import Publish, ReplicaAdopter
from otel_ml.processor.store.postgres.connection import PostgresConnection


class PostgresTotals(PostgresConnection):
    """Totals, state and heartbeats of :class:`~otel_ml.processor.store.postgres.PostgresJoinStore`."""

    def commit(self, totals: Mapping[Key, float]) -> None:
        """Write the deferred tombstones, this replica's totals and count deltas, then ``COMMIT``, in one round trip
        (psycopg pipeline mode); durable once this returns."""
        s = self._s
        wall = time.time()
        heartbeat = wall - self._last_heartbeat >= self.heartbeat
        with self._guard("commit", committing=True):
            db = self._db()
            with db.pipeline():
                for sql, params in self._deferred:
                    db.execute(sql, params)
                if totals:
                    names, attrs, values = [], [], []
                    for (name, at), value in totals.items():
                        names.append(name)
                        attrs.append(encode_attrs(at))
                        values.append(float(value))
                    db.execute(f"INSERT INTO {s}.aggregates (instance, metric, attrs, value) SELECT %b, * FROM "
                               "unnest(%b::text[], %b::text[], %b::float8[]) ON CONFLICT (instance, metric, attrs) "
                               "DO UPDATE SET value = excluded.value", (self.instance_id, names, attrs, values))
                if self._dpending or self._ddone:
                    db.execute(f"INSERT INTO {s}.counts (instance, pending, done) VALUES (%s, %s, %s) "
                               "ON CONFLICT (instance) DO UPDATE SET pending = counts.pending + excluded.pending, "
                               "done = counts.done + excluded.done", (self.instance_id, self._dpending, self._ddone))
                if heartbeat:
                    db.execute(f"INSERT INTO {s}.instances (instance, host, first_seen, last_seen) VALUES "
                               "(%s, %s, now(), now()) ON CONFLICT (instance) DO UPDATE SET last_seen = now(), "
                               "host = excluded.host, retired_at = NULL", (self.instance_id, socket.gethostname()))
                db.commit()
        self._healthy()
        if heartbeat:
            self._last_heartbeat = wall
        if self._pending_base is not None:
            self._pending_base += self._dpending
        self._deferred.clear()
        self._txn_keys.clear()
        self._wrote = False
        self._dpending = self._ddone = 0
        self._saved_head = self._head

    def load_aggregates(self) -> dict[Key, float]:
        """This replica's persisted totals (clears :meth:`needs_resync`)."""
        with self._guard("load aggregates"):
            rows = self._db().execute(f"SELECT metric, attrs, value FROM {self._s}.aggregates WHERE instance = %s",
                                      (self.instance_id,)).fetchall()
            self._end_read()
        self._needs_resync = False
        return {(name, decode_attrs(attrs)): value for name, attrs, value in rows}

    def _end_read(self) -> None:
        """End a read-only transaction (never left idle in transaction: the server would end the session)."""
        if not self._wrote:
            self._db().rollback()

    def delete_aggregates(self, keys: Sequence[Key]) -> None:
        """Remove totals of this replica in the current transaction (series retired by the cardinality caps)."""
        if not keys:
            return
        self._wrote = True
        with self._guard("delete aggregates"):
            self._db().execute(
                f"DELETE FROM {self._s}.aggregates a USING unnest(%b::text[], %b::text[]) AS d(metric, attrs) "
                "WHERE a.instance = %b AND a.metric = d.metric AND a.attrs = d.attrs",
                ([name for name, _ in keys], [encode_attrs(at) for _, at in keys], self.instance_id))

    def put_state(self, key: str, value: bytes) -> None:
        """Store a blob of this replica in the current transaction."""
        self._wrote = True
        with self._guard("state"):
            self._db().execute(f"INSERT INTO {self._s}.state VALUES (%s, %s, %s) ON CONFLICT (instance, key) "
                               "DO UPDATE SET value = excluded.value", (self.instance_id, key, bytes(value)))

    def load_state(self) -> dict[str, bytes]:
        """This replica's persisted blobs."""
        with self._guard("load state"):
            rows = self._db().execute(f"SELECT key, value FROM {self._s}.state WHERE instance = %s",
                                      (self.instance_id,)).fetchall()
            self._end_read()
        return {k: bytes(v) for k, v in rows}

    def adopter(self, timeout: float, publish: Publish) -> ReplicaAdopter:
        """The publisher of gone replicas' totals for this store (see :class:`ReplicaAdopter`; not started)."""
        return ReplicaAdopter(self.dsn, self.schema, self.instance_id, timeout, publish,
                              interval=min(10.0, max(timeout / 3, 0.5)))
