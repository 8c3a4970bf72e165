"""PostgreSQL join store: one database shared by every processor replica, so any replica may take any record.

With SQLite, a prediction and its label must reach the same replica; every change of the replica set strands the
joins pending on the wrong one. Here the pending records live in one PostgreSQL database: replicas are stateless
(apart from their own cumulative counters, kept under their ``instance_id``), the collector may spread records
over them in any way (round robin, ``load_balancing``), and a replica that dies loses nothing that was acknowledged.

Configuration (``store:``)::

    store:
      backend: postgres
      dsn: "postgresql://otelml:${env:OTEL_ML_PG_PASSWORD}@db.internal:5432/otelml?sslmode=verify-full"
      schema: otel_ml          # created if missing; every table lives there

Tables (schema :data:`SCHEMA_VERSION`, migrations in :data:`MIGRATIONS`):

* ``joins``: ONE row per join key (model + prediction id). A pending prediction has ``pred`` set, a pending label
  ``label``; when the second half arrives the row becomes a *tombstone* in place (``joined`` = time of the join,
  both payloads cleared, a HOT update: no index changes, as long as the page has room: the table's fillfactor is
  70). Tombstones make re-sent records duplicates for the label
  window (and at most ``max_pending`` of them are kept, like the SQLite store). Expiry is by ``arrived`` (the first
  half's arrival), through the ``joins_arrived`` index.
* ``aggregates`` and ``state``: the cumulative metric totals and state blobs (ROC-AUC windows) of each replica,
  keyed by its ``instance_id``: a replica's counters commit in the same transaction as its joins, and a replica
  restarted with the same id continues its series.
* ``counts``: the number of pending rows and tombstones as per-replica deltas (the sum over rows is the store's
  count; a replica only ever updates its own row, so the count costs no cross-replica contention).
* ``instances`` (replicas seen, with their last heartbeat), ``meta`` (row-encoding canaries), ``schema_migrations``.

How a join happens exactly once, whatever replicas see the two halves, in any order, at the same moment. Each group
commit is one READ COMMITTED transaction:

1. ``INSERT ... SELECT FROM unnest(...) ORDER BY k ON CONFLICT (k) DO UPDATE ... WHERE false RETURNING k`` writes
   every key of the group that does not exist yet (as the join logic would if the store held nothing for it: a
   pending row, or a tombstone for a pair or a prediction and label in the same group) and *locks* every key that
   exists (the PostgreSQL manual: with ``ON CONFLICT DO UPDATE`` "all rows will be locked" even where the ``WHERE``
   is false). A key being inserted by another uncommitted transaction makes this statement wait for it: the second
   replica then sees the first one's row. Keys are processed in key order, so two replicas lock in the same order
   and cannot deadlock on the join rows.
2. ``SELECT`` the locked existing rows (a new statement: its snapshot includes every commit it waited for). Nobody
   else can change them until this transaction ends.
3. The shared join logic (:class:`~otel_ml.processor.store.base._Joins`) decides per key: join, duplicate, or (for
   the keys inserted in 1) exactly what was already written. Existing pending rows that joined become tombstones
   with one ``UPDATE``.
4. ``commit(totals)`` writes the replica's aggregate totals and count deltas, then ``COMMIT``: the join, its
   counters and the tombstone are one atomic outcome. The replica that completes a join counts it; a re-sent record
   meets a tombstone (or its own pending half) and counts nothing.

Read-ahead (:meth:`PostgresJoinStore.prefetch`, called by the pipeline once a step's joins are decided): steps 1 and
2 of the NEXT group run on the replica's second connection, in its own transaction, while this step computes its
metrics and commits; the next step then takes that connection as its own (the transaction it continues is the one
that holds the locks). The keys this step's transaction holds go in a separate, second statement, which waits for
this step's ``COMMIT`` (or rollback) exactly as another replica's would, so the state it reads is the committed one.
After its reads start, a step takes no further row lock that could wait (the leader's sweep and eviction use
``SKIP LOCKED``), so the two connections of a replica cannot wait on each other in a cycle. A rollback ends this
step's transaction first, then the read-ahead's; a read-ahead that failed, or of other requests than the next
step's, is rolled back and the step reads for itself (``tests/processor/test_postgres_store.py``:
``test_read_ahead_joins_each_key_exactly_once``).

Expiry, the tombstone bound and the shared store's gauges are the work of one *leader* replica at a time (the
holder
of a session-level advisory lock; another replica takes over within ``store.expire_interval`` once the leader's
connection is gone). Expired and evicted rows are removed with ``FOR UPDATE SKIP LOCKED`` (never waiting on a row a
replica is joining) and counted by the replica that removed them. Eviction (more than ``max_pending`` pending) is
done by whichever replica's step crossed the bound, under a transaction-level advisory lock taken before it
re-reads the count: the overage is evicted once, not once per replica.

Failures. Every PostgreSQL error of a step raises :class:`PostgresStoreError` (a ``StoreError``): the pipeline
rolls back and the receivers answer ``UNAVAILABLE`` / 503 (retryable), so the collector's persistent queue keeps
the data. A broken connection (server restarted, network cut, failover) is dropped and opened again by the next
step. When a connection breaks *during* ``COMMIT`` its outcome is unknown: :meth:`PostgresJoinStore.needs_resync`
then tells the pipeline to reload this replica's totals from the database before its next step (the re-sent
records are duplicates if the commit did happen, and the totals include their counts). A read-only transaction
(``default_transaction_read_only``, a standby after a failover) also drops the connection, so that a multi-host DSN
with ``target_session_attrs=read-write`` finds the new primary. Deadlocks and serialization failures (only
possible when a DBA forces a stricter isolation level) are marked ``retryable``. The first failure of an episode
is logged (ERROR, with its kind), later ones are only counted, the recovery is logged once (WARNING). Session
settings bound every wait:
``statement_timeout`` :data:`STATEMENT_TIMEOUT`, ``lock_timeout`` :data:`LOCK_TIMEOUT`,
``idle_in_transaction_session_timeout`` :data:`IDLE_TIMEOUT` (a hung replica cannot hold row locks for long), and
``connect_timeout`` 5 s unless the DSN sets one.

Privileges: none beyond owning the schema (or ``CREATE`` on the database to create it). Migrations are versioned
(``schema_migrations``), run at start-up inside one transaction under ``pg_advisory_xact_lock``, so replicas
starting together apply each one once; a database migrated by a newer processor is refused with a clear error.
Each replica holds two connections for its single writer thread (the current step's and the read-ahead's; no pool
to size), one for the publisher of gone replicas' totals (:class:`ReplicaAdopter`) and a short-lived one during
start-up; the leader's advisory lock is session-level, so use session pooling (or none) in PgBouncer.

Row payloads are marshal-encoded tuples as in the SQLite store (the same :data:`MARSHAL_VERSION` pin and per-Python
canaries in ``meta``: a replica whose Python decodes another version's canary differently refuses to start while
rows are pending).

Modules (this package re-exports their public names; import from ``otel_ml.processor.store.postgres``):

- :mod:`~otel_ml.processor.store.postgres.joins`: :class:`PostgresJoinStore` and the join (step 3: decisions,
  deferred tombstones).
- :mod:`~otel_ml.processor.store.postgres.readahead`: steps 1-2 (insert-or-lock, read the locked rows) and the
  read-ahead on the second connection.
- :mod:`~otel_ml.processor.store.postgres.expiry`: leader election, expiry, eviction, tombstone bound, counts.
- :mod:`~otel_ml.processor.store.postgres.totals`: the commit, this replica's totals, state blobs and heartbeat.
- :mod:`~otel_ml.processor.store.postgres.adopter`: :class:`ReplicaAdopter`, the publisher of gone replicas' totals.
- :mod:`~otel_ml.processor.store.postgres.rows`: row payload encoding and decoding, quarantine.
- :mod:`~otel_ml.processor.store.postgres.connection`: the connections and transaction state, opening (migration,
  format check), reconnecting, error handling, rollback, close.
- :mod:`~otel_ml.processor.store.postgres.schema`: :data:`MIGRATIONS` and :func:`migrate`.
- :mod:`~otel_ml.processor.store.postgres.session`: :func:`connect`, :class:`PostgresStoreError`,
  :func:`error_kind`, session settings, advisory lock keys.
- :mod:`~otel_ml.processor.store.postgres.arrays`: array parameters in PostgreSQL's binary format.
"""

from otel_ml.processor.store.postgres.adopter import Publish, ReplicaAdopter
from otel_ml.processor.store.postgres.connection import HEARTBEAT_S, REOPEN_BACKOFF_S
from otel_ml.processor.store.postgres.joins import PostgresJoinStore
from otel_ml.processor.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION, migrate
from otel_ml.processor.store.postgres.session import (
    CONNECT_TIMEOUT_S,
    DEFAULT_LOCK_TIMEOUT_S,
    IDLE_TIMEOUT,
    STATEMENT_TIMEOUT,
    PostgresStoreError,
    connect,
    error_kind,
)

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_LOCK_TIMEOUT_S",
    "HEARTBEAT_S",
    "IDLE_TIMEOUT",
    "MIGRATIONS",
    "REOPEN_BACKOFF_S",
    "SCHEMA_VERSION",
    "STATEMENT_TIMEOUT",
    "PostgresJoinStore",
    "PostgresStoreError",
    "Publish",
    "ReplicaAdopter",
    "connect",
    "error_kind",
    "migrate",
]
