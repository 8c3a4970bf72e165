"""Stateless processor replicas on one PostgreSQL join store, behind the real collector (issue #13).

Every test runs the OCB-built collector with the shipped files (``gateway.yaml`` + ``scaleout-roundrobin.yaml``
or ``scaleout-static.yaml``), processor replicas with ``store.backend: postgres`` (password from
``${env:OTEL_ML_PG_PASSWORD}``), a throwaway PostgreSQL cluster and Prometheus. The goal is always the same: the
final counters in Prometheus equal the scikit-learn truth (every join counted once: 0 lost, 0 double), while
replicas are killed, added, removed, and the database is restarted or unreachable mid-stream.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from opentelemetry.proto.logs.v1 import logs_pb2

from otel_ml.semconv import metrics as m
from otel_ml.semconv import prom_name
from tests.integration.collector_stack import GATEWAY, ML_EXPORTER, SCALEOUT_STATIC, App, Stack, wait_for
from tests.integration.collector_workload import Workload, assert_matches_truth, make_workload, model_sum
from tests.integration.postgres_stack import (
    REPLICAS_NAME,
    ROUND_ROBIN_OVERLAY,
    DnsServer,
    HostProcessor,
    postgres_store,
    use_postgres,
)
from tests.integration.test_collector_scaleout import per_replica
from tests.support.postgres import PostgresServer
from tests.support.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
_schemas = itertools.count()


@pytest.fixture
def schema() -> str:
    return f"scaleout_{next(_schemas)}"


class Feeder(threading.Thread):
    """Sends records in small batches in the background (retrying like an SDK); :attr:`sent` is the progress."""

    def __init__(self, app: App, records: Sequence[logs_pb2.LogRecord], batch: int = 50, pause: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.app, self.records, self.batch, self.pause = app, records, batch, pause
        self.sent = 0
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            for i in range(0, len(self.records), self.batch):
                self.app.send(self.records[i:i + self.batch], timeout=180)
                self.sent = min(i + self.batch, len(self.records))
                time.sleep(self.pause)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def at(self, fraction: float, timeout: float = 120) -> None:
        """Wait until ``fraction`` of the records were accepted by the collector."""
        wait_for(lambda: self.sent >= fraction * len(self.records) or self.error is not None or not self.is_alive(),
                 timeout=timeout, what=f"{fraction:.0%} of the records sent")

    def finish(self, timeout: float = 240) -> None:
        self.join(timeout)
        assert not self.is_alive(), "feeder did not finish"
        if self.error is not None:
            raise self.error


def stream(w: Workload) -> list[logs_pb2.LogRecord]:
    """Every prediction, then every label: at the middle of the stream all joins are pending (the worst case)."""
    return w.predictions() + w.labels()


def round_robin_stack(tmp: Path, server: PostgresServer, schema: str, hosts: Sequence[str],
                      dns: DnsServer) -> tuple[Stack, list[HostProcessor]]:
    """gateway.yaml + scaleout-roundrobin.yaml; replicas on ``hosts`` (same port), created but not started."""
    port = free_port()
    stack = Stack(tmp, configs=(GATEWAY, ROUND_ROBIN_OVERLAY), store=postgres_store(server, schema),
                  collector_env={"OTEL_ML_PROCESSOR_ENDPOINT": dns.target(port)})
    replicas = [use_postgres(HostProcessor(tmp, stack.collector.grpc_endpoint, instance_id=f"replica-{i}", port=port,
                                           store=stack.store), host) for i, host in enumerate(hosts)]
    return stack, replicas


@contextmanager
def started_first(stack: Stack, replicas: list[HostProcessor]) -> Iterator[Stack]:
    """Start ``replicas`` before the collector (its round robin connects to every ready address at once; a replica
    that starts later is found after the gRPC reconnect back-off), then the rest of the stack."""
    for p in replicas:
        p.start()
    stack.processors = []
    try:
        with stack:
            stack.processors = list(replicas)
            yield stack
    finally:
        for p in replicas:
            p.stop()


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    server = DnsServer(REPLICAS_NAME, [f"127.0.0.{i}" for i in range(1, 5)])
    yield server
    server.close()


def test_round_robin_replicas_killed_added_removed(tmp_path: Path, postgres_server: PostgresServer, schema: str,
                                                  dns: DnsServer) -> None:
    """Round robin over 3 replicas (the 4th address of the name has no replica yet). Mid-stream: replica-1 is
    ``kill -9``ed with requests in flight, replica-3 is added, replica-2 is removed (SIGTERM), replica-1 comes back.
    Predictions and labels of one id reach different replicas; the totals end exactly at the truth."""
    w = make_workload(1500, seed=41)
    stack, replicas = round_robin_stack(tmp_path, postgres_server, schema, [f"127.0.0.{i}" for i in range(1, 5)], dns)
    with started_first(stack, replicas[:3]):
        assert stack.app is not None
        # ~30 s of traffic: long enough for gRPC's reconnect back-off (1 s, x1.6 per attempt) to find replica-3
        feeder = Feeder(stack.app, stream(w), batch=50, pause=0.4)
        feeder.at(0.2)
        replicas[1].kill9()  # in-flight requests fail: the collector's queue re-sends them to the others
        feeder.at(0.35)
        replicas[3].start()  # scale up
        stack.processors.append(replicas[3])
        feeder.at(0.6)
        assert replicas[2].stop() == 0  # scale down: a graceful stop commits and exports what it has
        feeder.at(0.75)
        replicas[1].start()  # the crashed replica is back (same instance_id: its counters continue)
        feeder.finish()
        # gRPC reconnects to an address that failed with exponential back-off (1 s, x1.6, up to 120 s): if the
        # stream ended before replica-3 was tried again, keep traffic of another model flowing until it takes some
        extra = make_workload(2000, model="warmup", seed=3).predictions()
        wait_for(lambda: received(stack).get("replica-3", 0) > 0 or bool(stack.send(extra[:20], batch=20)),
                 timeout=150, what="the added replica takes traffic")
        assert_matches_truth(stack, w, w.truth(), timeout=120)
        stack.wait_value(f"sum({prom_name(m.PROCESSOR_JOINS)})", len(w.ids))
        joins = per_replica(stack, m.LABELED_PREDICTIONS, w.model)
        predictions = per_replica(stack, m.PREDICTIONS, w.model)
        got = received(stack)
        print(f"\nper replica: predictions {predictions}, joins {joins}, records received {got}")
        assert sorted(k for k, v in got.items() if v) == [f"replica-{i}" for i in range(4)], got
        # a replica completes joins of predictions other replicas took: the counts per replica differ
        assert any(joins.get(r, 0) != predictions.get(r, 0) for r in predictions), (joins, predictions)
        assert dns.queries > 0


def received(stack: Stack) -> dict[str, float]:
    """Records each replica received, by ``instance_id``."""
    return {r["metric"]["exported_instance"]: float(r["value"][1]) for r in stack.prometheus.query(
        f"sum by (exported_instance) ({prom_name(m.PROCESSOR_RECORDS_RECEIVED)})")}


def test_load_balancing_ring_changes_lose_nothing(tmp_path: Path, postgres_server: PostgresServer,
                                                  schema: str) -> None:
    """scaleout-static.yaml (load_balancing) over the shared store: the worst case of
    test_collector_scaleout.py (every prediction pending while the ring changes 2 -> 3 -> 2; 30-39 % of the joins
    lost with per-replica SQLite stores) now loses none. Then replica-0 is killed -9 and replaced by a process at
    another address (the same instance_id, as a StatefulSet pod gets its name back)."""
    w = make_workload(1200, seed=43)
    half = len(w.ids) // 2
    stack = Stack(tmp_path, replicas=3, configs=(GATEWAY, SCALEOUT_STATIC),
                  store=postgres_store(postgres_server, schema))
    for p in stack.processors:
        use_postgres(p)
    with stack:
        replicas = stack.processors
        stack.set_replicas(replicas[:2])
        stack.send(w.predictions(range(half)), batch=100)
        stack.wait_value(model_sum(m.PREDICTIONS, w.model), half)
        stack.set_replicas(replicas[:3])  # ring change with every join pending
        stack.send(w.labels(range(half)), batch=100)
        stack.send(w.predictions(range(half, len(w.ids))), batch=100)
        stack.wait_value(model_sum(m.LABELED_PREDICTIONS, w.model), half)
        stack.set_replicas(replicas[1:3])  # and back to 2, the other way round
        replicas[0].kill9()
        moved = HostProcessor(tmp_path, stack.collector.grpc_endpoint, instance_id="replica-0", port=free_port(),
                              store=stack.store)
        use_postgres(moved, "127.0.0.1").start()
        stack.processors = [moved, replicas[1], replicas[2]]
        stack.set_replicas(stack.processors)
        stack.send(w.labels(range(half, len(w.ids))), batch=100)
        assert_matches_truth(stack, w, w.truth(), timeout=120)
        shares = per_replica(stack, m.LABELED_PREDICTIONS, w.model)
        assert sorted(k for k, v in shares.items() if v) == ["replica-0", "replica-1", "replica-2"], shares


def test_postgres_restarted_and_unreachable_mid_stream(tmp_path: Path, schema: str, dns: DnsServer) -> None:
    """3 round-robin replicas on a database that crashes (kill -9, restart: crash recovery) and later stays down
    for a while: the replicas answer UNAVAILABLE (retryable), the collector's persistent queue holds the data and
    re-sends it once the database is back; nothing is lost or counted twice."""
    server = PostgresServer().start()
    try:
        w = make_workload(1500, seed=47)
        stack, replicas = round_robin_stack(tmp_path, server, schema, ["127.0.0.1", "127.0.0.2", "127.0.0.3"], dns)
        with started_first(stack, replicas):
            assert stack.app is not None
            feeder = Feeder(stack.app, stream(w))
            feeder.at(0.3)
            server.kill9()
            time.sleep(1.0)
            server.start()
            feeder.at(0.55)
            server.stop()
            wait_for(lambda: "store unavailable" in stack.collector.process.log(1_000_000), timeout=60,
                     what="the processors answer UNAVAILABLE while the database is down")
            feeder.at(0.8)  # the collector keeps accepting: the data waits in its persistent queue
            queued = stack.collector.queue_size(ML_EXPORTER)
            assert queued > 0
            server.start()
            feeder.finish()
            assert_matches_truth(stack, w, w.truth(), timeout=150)
            log = "\n".join(p.process.log(200_000) for p in replicas)
            collector_log = stack.collector.process.log(400_000)
            print(f"\nqueued while the database was down: {queued:.0f} requests")
            assert "Unavailable" in collector_log
            assert "join store unavailable (unavailable)" in log  # the replicas' own account of the outage
    finally:
        server.close()


def test_prediction_on_one_replica_label_on_another(tmp_path: Path, postgres_server: PostgresServer,
                                                    schema: str) -> None:
    """No collector: predictions go to replica A's receiver, their labels to replica B's; B joins and counts them."""
    w = make_workload(400, seed=53)
    stack = Stack(tmp_path, replicas=2, configs=(GATEWAY, SCALEOUT_STATIC),
                  store=postgres_store(postgres_server, schema))
    for p in stack.processors:
        use_postgres(p)
    with stack:
        a, b = (App(p.endpoint) for p in stack.processors)
        try:
            a.send_all(w.predictions(), batch=100)
            b.send_all(w.labels(), batch=100)
            b.send_all(w.labels(range(100)), batch=100)  # re-sent: counted once
            a.send_all(w.labels(range(100, 200)), batch=100)  # re-sent to the other replica: counted once too
        finally:
            a.close()
            b.close()
        stack.wait_value(model_sum(m.LABELED_PREDICTIONS, w.model), len(w.ids))
        shares: Callable[[m.MetricSpec], dict[str, float]] = lambda spec: per_replica(stack, spec, w.model)  # noqa: E731
        time.sleep(2.5)
        assert shares(m.PREDICTIONS) == {"replica-0": len(w.ids)}
        assert shares(m.LABELED_PREDICTIONS) == {"replica-1": len(w.ids)}
        assert stack.value(model_sum(m.LABELS, w.model)) == len(w.ids)


def test_replica_killed_before_exporting_is_published_by_another(tmp_path: Path, postgres_server: PostgresServer,
                                                                 schema: str, dns: DnsServer) -> None:
    """replica-2 exports only every 60 s and is killed -9 right after committing its share: its counts are only in
    the database, and it never comes back (a Deployment replaces it under another name). After
    ``store.replica_timeout`` the sweep leader publishes its committed totals under ``replica-2``: the sums over
    replicas end exactly at the truth."""
    w = make_workload(900, seed=59)
    port = free_port()
    store = postgres_store(postgres_server, schema, replica_timeout="3s")
    stack = Stack(tmp_path, configs=(GATEWAY, ROUND_ROBIN_OVERLAY), store=store,
                  collector_env={"OTEL_ML_PROCESSOR_ENDPOINT": dns.target(port)})
    replicas = [use_postgres(HostProcessor(tmp_path, stack.collector.grpc_endpoint, instance_id=f"replica-{i}",
                                           port=port, store=store, interval="60s" if i == 2 else "1s"),
                             f"127.0.0.{i + 1}") for i in range(3)]
    with started_first(stack, replicas):
        stack.send(stream(w), batch=50)
        joins = (f"SELECT coalesce(sum(value), 0)::bigint FROM {schema}.aggregates "
                 f"WHERE metric = '{m.PROCESSOR_JOINS.name}'")
        wait_for(lambda: postgres_server.psql(joins, "otelml") == str(len(w.ids)), timeout=60,
                 what="all joins committed")
        mine = postgres_server.psql(f"{joins} AND instance = 'replica-2'", "otelml")
        assert int(mine) > 0, "replica-2 committed a share of the joins"
        replicas[2].kill9()
        assert_matches_truth(stack, w, w.truth(), timeout=90)
        assert per_replica(stack, m.LABELED_PREDICTIONS, w.model).get("replica-2", 0) > 0
        retired = postgres_server.psql(f"SELECT instance FROM {schema}.instances WHERE retired_at IS NOT NULL",
                                       "otelml")
        assert retired == "replica-2"
        assert any("replica replica-2 is gone" in p.process.log(100_000) for p in replicas[:2])
