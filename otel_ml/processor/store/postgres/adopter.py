"""The publisher of gone replicas' last committed totals (:class:`ReplicaAdopter`), on its own connection.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from otel_ml.processor.aggregates import Key, decode_attrs
from otel_ml.processor.store.postgres.session import _LOCK_CLASS_ADOPT, _quote, connect

if TYPE_CHECKING:
    import psycopg

_logger = logging.getLogger(__name__)

Publish = Callable[[str, dict[Key, float]], bool]
"""``publish(instance_id, totals)``: export ``totals`` once as the series of ``instance_id``; True on success."""


class ReplicaAdopter:
    """Publishes the last committed totals of replicas that are gone (the leader's job, on its own connection).

    A replica commits its counters with its joins, but exports them only every ``metrics.otlp.interval``: one
    killed between a commit and its next export (``kill -9``, OOM, node loss) leaves counts that only the database
    knows. When it comes back with the same ``instance_id`` it restores and exports them itself; a replica replaced
    under a new id (a Deployment's pod) never does. So one replica (the holder of an advisory lock) checks every
    ``interval`` for replicas whose heartbeat (``instances.last_seen``, refreshed with a commit every third of
    ``timeout``, at most every :data:`HEARTBEAT_S`; the processor commits at least every second) is older than
    ``timeout``, exports their totals once under their own ``instance_id``
    (``publish``) and marks them retired. Their series then end at their true final values, and sums over replicas
    are exact. A retired replica that comes back clears the mark with its next heartbeat.
    """

    def __init__(self, dsn: str, schema: str, instance_id: str, timeout: float, publish: Publish,
                 interval: float = 10.0) -> None:
        self.dsn, self.schema, self.instance_id = dsn, schema, instance_id
        self.timeout, self.publish, self.interval = timeout, publish, interval
        self._s = _quote(schema)
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otel-ml-adopter", daemon=True)

    def start(self) -> ReplicaAdopter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._conn is not None:
            self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                _logger.exception("publishing the totals of gone replicas failed (retried in %.0f s)", self.interval)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

    def run_once(self) -> list[str]:
        """One check; returns the replicas whose totals were published."""
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.dsn, f"otel-ml-adopter {self.instance_id}"[:63])
            self._conn.autocommit = True
        conn, s = self._conn, self._s
        row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", (_LOCK_CLASS_ADOPT, self.schema)).fetchone()
        if not row or not row[0]:
            return []  # another replica does it (the lock is held for the life of its connection)
        gone = [r[0] for r in conn.execute(
            f"SELECT instance FROM {s}.instances WHERE retired_at IS NULL AND instance <> %s "
            "AND last_seen < now() - make_interval(secs => %s) ORDER BY instance", (self.instance_id, self.timeout))]
        done = []
        for instance in gone:
            totals = {(name, decode_attrs(attrs)): value for name, attrs, value in conn.execute(
                f"SELECT metric, attrs, value FROM {s}.aggregates WHERE instance = %s", (instance,))}
            if totals and not self.publish(instance, totals):
                continue  # the collector did not take them: try again next time
            conn.execute(f"UPDATE {s}.instances SET retired_at = now() WHERE instance = %s AND retired_at IS NULL "
                         "AND last_seen < now() - make_interval(secs => %s)", (instance, self.timeout))
            _logger.warning("replica %s is gone (no heartbeat for %.0f s): published its last totals (%d series)",
                            instance, self.timeout, len(totals))
            done.append(instance)
        return done
