"""The PostgreSQL join store beyond the shared conformance suite: several replicas at once, faults, configuration.

Every test runs against the session's throwaway PostgreSQL cluster (tests/support/postgres.py), as a
non-superuser role, each in its own schema.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_ml.errors import StoreError
from otel_ml.processor import config as cfg
from otel_ml.processor.config import ConfigError, from_mapping, substitute_env
from otel_ml.processor.records import is_prediction
from otel_ml.processor.step import Processor
from otel_ml.processor.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresJoinStore, PostgresStoreError, migrate
from otel_ml.semconv import metrics as m
from tests.processor.conftest import label_row, pred_row
from tests.support.postgres import PG_PASSWORD, PG_ROLE, PostgresServer
from tests.support.procs import free_port, wait_until

DAY = 86400.0
T0 = 1_700_000_000.0
_ids = itertools.count()


@pytest.fixture
def schema() -> str:
    return f"pgstore_{next(_ids)}"


@pytest.fixture
def stores(postgres_server: PostgresServer, schema: str) -> Iterator[list[PostgresJoinStore]]:
    opened: list[PostgresJoinStore] = []
    yield opened
    for s in opened:
        try:
            s.close()
        except Exception:
            pass


def open_replica(server: PostgresServer, schema: str, opened: list[PostgresJoinStore], name: str,
                 label_window: float = 7 * DAY, max_pending: int = 10**9) -> PostgresJoinStore:
    store = PostgresJoinStore(server.dsn(), label_window, max_pending, name, schema=schema)
    opened.append(store)
    return store


# --- several replicas on one database --------------------------------------------------------------------------------
def test_replicas_join_each_key_exactly_once(postgres_server: PostgresServer, schema: str,
                                             stores: list[PostgresJoinStore]) -> None:
    """4 replicas, each in its own thread, receive a shuffled mix of predictions, labels, pairs and re-sent
    duplicates; the prediction and label of one id usually go to different replicas, often at the same moment.
    Every id with both halves is joined exactly once across replicas, nothing stays pending, and the per-replica
    counts committed with the joins add up."""
    rng = random.Random(5)
    n = 3000
    records: list[tuple[str, object]] = []
    for i in range(n):
        pid = f"id-{i}"
        if i % 10 == 0:
            records.append(("p", pred_row(pid, T0, label="1")))  # a pair
        else:
            records.append(("p", pred_row(pid, T0)))
            records.append(("l", label_row(pid, T0)))
    records += rng.sample(records, n // 3)  # re-sent requests
    rng.shuffle(records)
    replicas = [open_replica(postgres_server, schema, stores, f"replica-{r}") for r in range(4)]
    joined: list[Counter[str]] = [Counter() for _ in replicas]
    new_preds = [0] * len(replicas)
    barrier = threading.Barrier(len(replicas))
    errors: list[BaseException] = []

    def run(r: int) -> None:
        store, mine = replicas[r], records[r::len(replicas)]
        barrier.wait()
        try:
            for start in range(0, len(mine), 37):
                chunk = mine[start:start + 37]
                preds = [row for kind, row in chunk if kind == "p"]
                labels = [row for kind, row in chunk if kind == "l"]
                for attempt in range(5):
                    try:
                        res = store.ingest(preds, labels, T0)  # type: ignore[arg-type]
                        store.commit({})
                        break
                    except PostgresStoreError as exc:
                        store.rollback()
                        if not exc.retryable or attempt == 4:
                            raise
                joined[r].update(row[0] for row in res.joined)
                new_preds[r] += len(res.new_predictions)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    total = sum(joined, Counter())
    assert len(total) == n and max(total.values()) == 1, "every id joined exactly once"
    assert sum(new_preds) == n, "each prediction accepted once, re-sent ones are duplicates"
    assert all(sum(c.values()) > 0 for c in joined), "every replica completed some joins"
    assert replicas[0].pending() == 0
    counts = postgres_server.psql(f"SELECT sum(pending), sum(done), count(*) FROM {schema}.counts", "otelml")
    assert counts == f"0|{n}|4"


def test_read_ahead_joins_each_key_exactly_once(postgres_server: PostgresServer, schema: str,
                                              stores: list[PostgresJoinStore]) -> None:
    """The writer's read-ahead under concurrency: 3 replicas, each in its own thread, run steps as the pipeline does
    (ingest_many of a group, prefetch of the NEXT group on the second connection, then commit), with the other half
    of many keys in the replica's own next group (the prefetch waits for this transaction's locks), on other
    replicas (at the same moment), re-sent duplicates, and random failures: a rollback after the prefetch (the
    group is retried; the prefetch discarded while it may still wait on this transaction), a next group that is
    not the one prefetched (discarded), a leader's expiry sweep between steps (SKIP LOCKED past the prefetched
    rows). Every id with both halves joins exactly once, nothing stays pending, the per-replica counts add up."""
    rng = random.Random(11)
    n, n_replicas = 3000, 3
    per: list[list[tuple[str, object]]] = [[] for _ in range(n_replicas)]
    for i in range(n):
        pid = f"id-{i}"
        if i % 10 == 0:  # a pair
            per[rng.randrange(n_replicas)].append(("p", pred_row(pid, T0, label="1")))
            continue
        rp, rl = rng.randrange(n_replicas), rng.randrange(n_replicas)
        per[rp].append(("p", pred_row(pid, T0)))
        per[rl].append(("l", label_row(pid, T0)))
    for mine in per:  # re-sent records; shuffled only locally: halves of one id often land in adjacent groups
        mine += rng.sample(mine, len(mine) // 4)
        for j in range(0, len(mine) - 40, 20):
            window = mine[j:j + 40]
            rng.shuffle(window)
            mine[j:j + 40] = window
    replicas = [open_replica(postgres_server, schema, stores, f"ahead-{r}", label_window=1000 * DAY)
                for r in range(n_replicas)]
    joined: list[Counter[str]] = [Counter() for _ in replicas]
    new_preds = [0] * n_replicas
    started = [0] * n_replicas
    barrier = threading.Barrier(n_replicas)
    errors: list[BaseException] = []

    def group(chunk: list[tuple[str, object]]) -> list[tuple[list[object], list[object]]]:
        half = len(chunk) // 2  # two requests per group, as the writer groups them
        return [([row for kind, row in part if kind == "p"], [row for kind, row in part if kind == "l"])
                for part in (chunk[:half], chunk[half:])]

    def run(r: int) -> None:
        store, rr = replicas[r], random.Random(r)
        groups = [group(per[r][i:i + 30]) for i in range(0, len(per[r]), 30)]
        barrier.wait()
        try:
            i = 0
            while i < len(groups):
                batches = groups[i]
                try:
                    results = store.ingest_many(batches, T0)  # type: ignore[arg-type]
                    if i + 1 < len(groups):
                        nxt = groups[i + 1]
                        if store.prefetch(nxt):  # type: ignore[arg-type]
                            started[r] += 1
                        if rr.random() < 0.05:  # a different next group: the prefetch is discarded
                            groups[i + 1] = [(list(p), list(lb)) for p, lb in nxt]
                    if rr.random() < 0.08:
                        store.rollback()  # the step failed after reading ahead: retried from scratch
                        continue
                    store.commit({})
                except PostgresStoreError as exc:
                    store.rollback()
                    if not exc.retryable:
                        raise
                    continue
                for res in results:
                    joined[r].update(row[0] for row in res.joined)
                    new_preds[r] += len(res.new_predictions)
                if store.is_leader() and rr.random() < 0.2:
                    store.expire(T0 + 1)  # nothing is old enough; the sweep must skip the prefetched rows
                    store.commit({})
                i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(n_replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert all(s > 10 for s in started), started
    total = sum(joined, Counter())
    assert len(total) == n and max(total.values()) == 1, "every id joined exactly once"
    assert sum(new_preds) == n, "each prediction accepted once, re-sent ones are duplicates"
    assert replicas[0].pending() == 0
    counts = postgres_server.psql(f"SELECT sum(pending), sum(done), count(*) FROM {schema}.counts", "otelml")
    assert counts == f"0|{n}|{n_replicas}"


def test_concurrent_halves_at_the_same_moment(postgres_server: PostgresServer, schema: str,
                                             stores: list[PostgresJoinStore]) -> None:
    """The worst race: replica A inserts a prediction and has not committed when replica B receives its label.
    B waits on A's row; once A commits, B joins it (it does not insert a second pending row)."""
    a = open_replica(postgres_server, schema, stores, "a")
    b = open_replica(postgres_server, schema, stores, "b")
    a.ingest([pred_row("x", T0, cls="c1")], [], T0)  # uncommitted
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(b.ingest([], [label_row("x", T0 + 1, value="c2")], T0 + 1)))
    t.start()
    t.join(0.5)
    assert t.is_alive(), "B must wait for A's uncommitted row"
    a.commit({})
    t.join(10)
    res = out[0]
    assert len(res.joined) == 1 and res.joined[0][6] == "c1"  # type: ignore[attr-defined]
    b.commit({})
    assert a.pending() == 0 and b.pending() == 0


def test_rolled_back_half_lets_the_other_wait(postgres_server: PostgresServer, schema: str,
                                              stores: list[PostgresJoinStore]) -> None:
    """If A rolls back instead, B's label is inserted as pending (nothing joined, nothing lost)."""
    a = open_replica(postgres_server, schema, stores, "a")
    b = open_replica(postgres_server, schema, stores, "b")
    a.ingest([pred_row("x", T0)], [], T0)
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(b.ingest([], [label_row("x", T0 + 1)], T0 + 1)))
    t.start()
    t.join(0.3)
    a.rollback()
    t.join(10)
    assert not out[0].joined and out[0].new_labels == [0]  # type: ignore[attr-defined]
    b.commit({})
    assert a.pending() == 1


def test_expiry_runs_once_across_replicas(postgres_server: PostgresServer, schema: str,
                                         stores: list[PostgresJoinStore]) -> None:
    """Only the leader sweeps; when its connection goes, another replica takes over and counts what it expires."""
    a = open_replica(postgres_server, schema, stores, "a", label_window=DAY)
    b = open_replica(postgres_server, schema, stores, "b", label_window=DAY)
    a.ingest([pred_row(f"p{i}", T0) for i in range(5)], [label_row("orphan", T0)], T0)
    a.commit({})
    assert a.is_leader() and not b.is_leader()
    assert b.expire(T0 + 2 * DAY) == []
    expired = a.expire(T0 + 2 * DAY)
    a.commit({})
    assert sorted(is_prediction(r) for r in expired) == [False] + [True] * 5
    b.ingest([pred_row("q", T0)], [], T0)
    b.commit({})
    a.close()  # the leader's connection ends: its advisory lock is released (once its backend has exited)
    wait_until(b.is_leader, timeout=10, what="b takes over the sweep")
    assert len(b.expire(T0 + 2 * DAY)) == 1
    b.commit({})
    assert b.pending() == 0


def test_eviction_once_across_replicas(postgres_server: PostgresServer, schema: str,
                                       stores: list[PostgresJoinStore]) -> None:
    """The pending bound is shared: the overage is evicted once, by the replica whose step crossed it."""
    a = open_replica(postgres_server, schema, stores, "a", max_pending=10)
    b = open_replica(postgres_server, schema, stores, "b", max_pending=10)
    a.ingest([pred_row(f"a{i}", T0 + i) for i in range(8)], [], T0 + 8)
    a.commit({})
    r = b.ingest([pred_row(f"b{i}", T0 + 10 + i) for i in range(4)], [], T0 + 20)
    b.commit({})
    assert [x[0].split("\x1f")[1] for x in r.evicted] == ["a0", "a1"]
    r = a.ingest([], [], T0 + 21)
    assert b.pending() == 10 and a.pending() == 10


def test_migrations_concurrent_and_versioned(postgres_server: PostgresServer, schema: str) -> None:
    """Replicas starting together apply each migration once; a newer schema is refused with a clear error."""
    import psycopg

    conns = [psycopg.connect(postgres_server.dsn()) for _ in range(4)]
    errors: list[BaseException] = []

    def run(c: psycopg.Connection[object]) -> None:
        try:
            migrate(c, schema, "x")  # type: ignore[arg-type]
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    rows = postgres_server.psql(f"SELECT version FROM {schema}.schema_migrations ORDER BY 1", "otelml")
    assert rows.split() == [str(v) for v, _, _ in MIGRATIONS] and SCHEMA_VERSION == MIGRATIONS[-1][0]
    assert postgres_server.psql(f"SELECT reloptions FROM pg_class WHERE oid = '{schema}.joins'::regclass",
                                "otelml") == "{fillfactor=70}"  # migration 4: room for in-page tombstone updates
    postgres_server.psql(f"INSERT INTO {schema}.schema_migrations VALUES ({SCHEMA_VERSION + 1}, 'future', now(), "
                         "'a newer processor')", "otelml")
    with pytest.raises(PostgresStoreError, match=f"version {SCHEMA_VERSION + 1}, newer than this processor"):
        PostgresJoinStore(postgres_server.dsn(), DAY, 10, "x", schema=schema)
    for c in conns:
        c.close()


def test_no_superuser_privileges_needed(postgres_server: PostgresServer) -> None:
    assert postgres_server.psql(f"SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = "
                                f"'{PG_ROLE}'") == "f|f|f"


# --- faults ----------------------------------------------------------------------------------------------------------
def test_connection_killed_mid_transaction(postgres_server: PostgresServer, schema: str,
                                           stores: list[PostgresJoinStore]) -> None:
    """The server ends the session mid-step (failover, restart, pg_terminate_backend): the step fails with a
    StoreError, nothing of it is committed, and the next step runs on a new connection."""
    s = open_replica(postgres_server, schema, stores, "a")
    s.ingest([pred_row("kept", T0)], [], T0)
    s.commit({("c", ()): 1.0})
    s.ingest([pred_row("lost", T0)], [label_row("kept", T0)], T0)
    assert postgres_server.terminate_backends("otelml") >= 1
    with pytest.raises(StoreError):
        s.commit({("c", ()): 2.0})
    s.rollback()
    # the commit's statements and COMMIT go out in one pipeline: a broken connection leaves its outcome unknown to
    # the client, which re-reads the totals (here: the step was not committed)
    assert s.needs_resync() is True
    assert s.load_aggregates() == {("c", ()): 1.0} and s.needs_resync() is False
    r = s.ingest([pred_row("lost", T0)], [label_row("kept", T0)], T0)
    assert r.new_predictions == [0] and len(r.joined) == 1
    s.commit({("c", ()): 2.0})
    assert s.pending() == 1


def test_read_only_database_refuses_and_recovers(postgres_server: PostgresServer, schema: str,
                                                 stores: list[PostgresJoinStore]) -> None:
    s = open_replica(postgres_server, schema, stores, "a")
    postgres_server.psql("ALTER DATABASE otelml SET default_transaction_read_only = on")
    try:
        postgres_server.terminate_backends("otelml")  # new sessions pick the setting up
        messages = []
        for _ in range(2):  # the first step finds its session terminated, the next one reconnects
            with pytest.raises(StoreError) as e:
                s.ingest([pred_row("a", T0)], [], T0)
            s.rollback()
            messages.append(str(e.value))
        # the first step finds its session gone (the server's FATAL text is lost when the statements were pipelined)
        assert "(unavailable)" in messages[0] and ("terminating connection" in messages[0]
                                                   or "server closed the connection" in messages[0]), messages
        assert "(readonly)" in messages[1] and "read-only transaction" in messages[1], messages
    finally:
        postgres_server.psql("ALTER DATABASE otelml SET default_transaction_read_only = off")
    assert s.ingest([pred_row("a", T0)], [], T0).new_predictions == [0]
    s.commit({})


def test_unreachable_database_is_a_clear_error(postgres_server: PostgresServer) -> None:
    dsn = f"postgresql://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{free_port()}/otelml"
    with pytest.raises(StoreError, match=r"cannot connect to PostgreSQL at postgresql://otelml:\*\*\*@127.0.0.1") as e:
        PostgresJoinStore(dsn, DAY, 10, "x")
    assert PG_PASSWORD not in str(e.value)
    with pytest.raises(StoreError, match="password authentication failed"):
        PostgresJoinStore(postgres_server.dsn(password="wrong"), DAY, 10, "x")


def test_cli_exits_1_when_the_database_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(f"store: {{backend: postgres, dsn: 'postgresql://{PG_ROLE}:${{env:PGPW}}@127.0.0.1:"
                      f"{free_port()}/otelml'}}\nreceiver: {{grpc: {{endpoint: '127.0.0.1:0'}}, http: null}}\n"
                      "metrics: {otlp: null}\n")
    out = subprocess.run([sys.executable, "-m", "otel_ml.processor", "--config", str(config)], capture_output=True,
                         text=True, timeout=60, env={"PGPW": "s3cret", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1, out
    assert ("cannot start: join store unavailable (unavailable): cannot connect to PostgreSQL at "
            "postgresql://otelml:***@127.0.0.1") in out.stderr
    assert "s3cret" not in out.stderr + out.stdout


def test_resync_after_a_commit_with_unknown_outcome(postgres_server: PostgresServer, schema: str,
                                                   stores: list[PostgresJoinStore]) -> None:
    """The connection breaks while COMMIT is in flight (here: after it committed): the pipeline reloads the
    committed totals before its next step, so a re-sent request (now duplicates) leaves them right."""
    s = open_replica(postgres_server, schema, stores, "a")
    pipe = Processor(from_mapping({"store": {"backend": "memory"}}), s, clock=lambda: T0)
    from otel_ml.processor.decode import Decoded

    def decoded(preds: list[object], labels: list[object]) -> Decoded:
        return Decoded(predictions=preds, labels=labels, received=len(preds) + len(labels))  # type: ignore[arg-type]

    pipe.process([decoded([pred_row("a", T0)], [])])
    conn = s._conn
    assert conn is not None
    real_commit = conn.commit

    def commit_then_break() -> None:
        real_commit()
        conn.close()
        raise __import__("psycopg").OperationalError("server closed the connection unexpectedly")
    conn.commit = commit_then_break  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        pipe.process([decoded([], [label_row("a", T0)])])
    assert s.needs_resync()
    assert pipe.aggregates.value(m.PROCESSOR_JOINS.name) == 0  # the mirror did not see the commit
    pipe.process([decoded([], [label_row("a", T0)])])  # the collector re-sends the request
    assert pipe.aggregates.value(m.PROCESSOR_JOINS.name) == 1 and not s.needs_resync()
    assert s.load_aggregates()[(m.PROCESSOR_JOINS.name, ())] == 1


# --- configuration ---------------------------------------------------------------------------------------------------
def test_config_postgres_and_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_ML_TEST_PW", "p@ss: #word$")
    path = tmp_path / "p.yaml"
    path.write_text('store:\n  backend: postgres\n  dsn: "postgresql://u:${env:OTEL_ML_TEST_PW}@db/x"\n'
                    "  schema: ml_joins\ninstance_id: ${env:OTEL_ML_TEST_ID:-replica-x}\n")
    c = cfg.load(path)
    assert c.store.dsn == "postgresql://u:p@ss: #word$@db/x" and c.store.schema == "ml_joins"
    assert c.instance_id == "replica-x"
    assert substitute_env("a$$b${env:OTEL_ML_TEST_PW}", {"OTEL_ML_TEST_PW": "x"}) == "a$bx"
    auto = from_mapping({"store": {"backend": "postgres", "dsn": "postgresql://u:one@db/x"}}).resolved_instance_id()
    assert auto == from_mapping({"store": {"backend": "postgres", "dsn": "postgresql://u:two@db/x"}}
                                ).resolved_instance_id(), "the password is not part of the instance id"


@pytest.mark.parametrize(("store", "key", "message"), [
    ({"backend": "postgres"}, "store.dsn", "required with backend postgres"),
    ({"backend": "postgres", "dsn": "mysql://x"}, "store.dsn", "postgresql:// URL"),
    ({"backend": "sqlite", "dsn": "postgresql://x"}, "store.dsn", "only used with backend postgres"),
    ({"backend": "postgres", "dsn": "postgresql://x", "schema": "Bad-Name"}, "store.schema", "SQL identifier"),
    ({"backend": "postgres", "dsn": "${env:OTEL_ML_UNSET_VAR}"}, "store.dsn", "OTEL_ML_UNSET_VAR is not set"),
])
def test_config_errors(store: dict[str, str], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        from_mapping(substitute_env({"store": store}, {}))
    assert e.value.key == key


def test_disk_full_refuses_then_recovers(postgres_server: PostgresServer) -> None:
    """A real ENOSPC: the store's database lives in a tablespace on a 12 MiB tmpfs. Steps fail with a StoreError
    (the receivers answer UNAVAILABLE) and commit nothing; once the volume grows, the same records go in, and what
    was committed before is intact."""
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the test command runs as root)")
    mnt = postgres_server.root / "small"  # the server's directory: reachable by its OS user (tmp_path is not)
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    store = None
    try:
        (mnt / "ts").mkdir()
        os.chown(mnt / "ts", *(lambda p: (p.pw_uid, p.pw_gid))(__import__("pwd").getpwnam(postgres_server.superuser)))
        postgres_server.psql(f"CREATE TABLESPACE small LOCATION '{mnt / 'ts'}'")
        postgres_server.psql(f"CREATE DATABASE diskfull OWNER {PG_ROLE} TABLESPACE small")
        store = PostgresJoinStore(postgres_server.dsn(database="diskfull"), DAY, 10**9, "a", schema="full")
        store.ingest([pred_row("first", T0)], [], T0)
        store.commit({("c", ()): 1.0})
        batch = 0
        with pytest.raises(StoreError, match="No space left on device") as e:
            while batch < 200:  # ~15 MB of rows and index entries at most
                rows = [pred_row(f"b{batch}-{i}-" + "x" * 200, T0) for i in range(500)]
                store.ingest(rows, [], T0)
                store.commit({("c", ()): 1.0 + batch})
                batch += 1
        store.rollback()
        assert "could not extend file" in str(e.value) or "No space left" in str(e.value)
        failed = [pred_row(f"b{batch}-{i}-" + "x" * 200, T0) for i in range(500)]
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        r = store.ingest(failed, [label_row("first", T0)], T0)  # the collector re-sends the refused request
        assert len(r.new_predictions) == 500 and len(r.joined) == 1
        store.commit({("c", ()): 99.0})
        assert store.pending() == 500 * (batch + 1) and store.load_aggregates() == {("c", ()): 99.0}
    finally:
        if store is not None:
            store.close()
        postgres_server.psql("DROP DATABASE IF EXISTS diskfull")
        postgres_server.psql("DROP TABLESPACE IF EXISTS small")
        subprocess.run(["umount", str(mnt)], check=False)
