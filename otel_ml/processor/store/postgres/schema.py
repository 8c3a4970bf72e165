"""The tables: versioned migrations (:data:`MIGRATIONS`) and :func:`migrate`, run at start-up under an advisory
lock; a schema migrated by a newer processor is refused.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any, Final

from otel_ml.processor.store.postgres.session import (
    _LOCK_CLASS_MIGRATE,
    PostgresStoreError,
    _psycopg,
    _quote,
    error_kind,
)
from otel_ml.semconv.attributes import StoreErrorReason as Kind

if TYPE_CHECKING:
    import psycopg

_logger = logging.getLogger(__name__)

SCHEMA_VERSION: Final = 5

MIGRATIONS: Final[tuple[tuple[int, str, str], ...]] = (
    (1, "join rows, per-instance aggregates/state/counts, instances, meta", """
CREATE TABLE {s}.joins (
  k       text PRIMARY KEY,            -- model U+001F prediction id
  arrived double precision NOT NULL,   -- processor time the first half arrived (expiry order)
  joined  double precision,            -- NULL: pending; else time of the join (a tombstone)
  pred    bytea,                       -- pending prediction half (marshal), NULL in a tombstone
  label   bytea                        -- pending label half (marshal), NULL in a tombstone
) WITH (fillfactor = 85);              -- room for the in-place (HOT) update that turns a row into a tombstone
CREATE INDEX joins_arrived ON {s}.joins (arrived);
CREATE TABLE {s}.aggregates (
  instance text NOT NULL, metric text NOT NULL, attrs text NOT NULL, value double precision NOT NULL,
  PRIMARY KEY (instance, metric, attrs));
CREATE TABLE {s}.state (instance text NOT NULL, key text NOT NULL, value bytea NOT NULL,
  PRIMARY KEY (instance, key));
CREATE TABLE {s}.counts (instance text PRIMARY KEY, pending bigint NOT NULL DEFAULT 0,
  done bigint NOT NULL DEFAULT 0);
CREATE TABLE {s}.instances (instance text PRIMARY KEY, host text NOT NULL, first_seen timestamptz NOT NULL,
  last_seen timestamptz NOT NULL);
CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL);
"""),
    (2, "instances.retired_at: replicas gone whose last totals were published by another", """
ALTER TABLE {s}.instances ADD COLUMN retired_at timestamptz;
"""),
    (3, "gone tombstones (joins.gone) and the quarantine of undecodable rows", """
ALTER TABLE {s}.joins ADD COLUMN gone smallint;  -- tombstone of a half that left unjoined: 1 prediction, 2 label
CREATE TABLE {s}.quarantine (k text NOT NULL, pred bytea, label bytea, reason text NOT NULL,
  at timestamptz NOT NULL DEFAULT now(), instance text NOT NULL);
"""),
    (4, "joins fillfactor 70: room on the page for the update that turns a pending row into a tombstone", """
-- with room left on its page the new version stays there (a HOT update: no index entries). Measured on groups of
-- 4000 events: 42 % of these updates were HOT at fillfactor 85, 99.6 % at 70 (the UPDATE's WAL -63 %). Applies to
-- pages written from now on; no rewrite.
ALTER TABLE {s}.joins SET (fillfactor = 70);
"""),
    (5, 'join keys compared byte by byte (COLLATE "C"): no locale collation in the primary key', """
ALTER TABLE {s}.joins ALTER COLUMN k TYPE text COLLATE "C";  -- rebuilds the primary key (the heap is not rewritten)
"""),
)
"""Versioned migrations ``(version, description, SQL with {s} = quoted schema)``; append only, never edit."""


def migrate(conn: psycopg.Connection[Any], schema: str, instance: str = "") -> int:
    """Bring ``schema`` to :data:`SCHEMA_VERSION` (one transaction, under an advisory lock); returns the version.

    Safe to run from several replicas at once: the second waits for the first and finds nothing left to do.

    Raises:
        PostgresStoreError: The schema was migrated by a newer processor, or a migration failed (nothing applied).
    """
    psycopg = _psycopg()
    s = _quote(schema)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_CLASS_MIGRATE, schema))
            if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchone() is None:
                conn.execute(f"CREATE SCHEMA {s}")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {s}.schema_migrations (version integer PRIMARY KEY, "
                         "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), "
                         "applied_by text NOT NULL)")
            row = conn.execute(f"SELECT coalesce(max(version), 0) FROM {s}.schema_migrations").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise PostgresStoreError(
                    Kind.OTHER, f"schema {schema} is at version {current}, newer than this processor's "
                                f"{SCHEMA_VERSION}: run a processor image at least as new as the one that migrated it")
            for version, description, sql in MIGRATIONS:
                if version > current:
                    conn.execute(sql.format(s=s))
                    conn.execute(f"INSERT INTO {s}.schema_migrations (version, description, applied_by) "
                                 "VALUES (%s, %s, %s)", (version, description, instance or socket.gethostname()))
                    _logger.info("join store schema %s migrated to version %d (%s)", schema, version, description)
    except psycopg.Error as exc:
        raise PostgresStoreError(error_kind(exc), f"cannot migrate the join store schema {schema}: "
                                                  f"{str(exc).strip()}") from exc
    return SCHEMA_VERSION
