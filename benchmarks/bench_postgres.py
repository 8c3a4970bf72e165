"""Scale-out on PostgreSQL: end-to-end events/s with 1, 2, 3 replicas on one database, SQLite side by side; the
footprint of 10 million pending predictions in PostgreSQL.

One run measures, in alternating rounds (the shared machine's speed drifts; compare figures of one run):

1. ``sqlite``: one processor (``python -m otel_ml.processor``, SQLite WAL store), the reference;
2. ``postgres xN``: N processor replicas, all on one PostgreSQL database (a throwaway cluster started by this script:
   ``initdb`` in a temp dir, ``synchronous_commit = on``, ``fsync = on``, non-superuser role, as in the tests).

Traffic: the same pre-serialized 1000-record OTLP requests as ``bench_processor.py`` (500 predictions + 500 labels of
the predictions sent two requests earlier, so every label joins), sent over OTLP/gRPC with 4 requests in flight in
total, spread round robin over the replicas (so a prediction and its label usually reach different replicas, the
case the shared store exists for). Events/s = records acknowledged (committed) / wall time. CPU seconds per event
are read from /proc for the processors and for every PostgreSQL server process (backends, WAL writer,
checkpointer...), so the figures also say where the time goes: processor CPU per event bounds what one replica can
do, PostgreSQL CPU per event bounds what one database can take. The number of joins is checked on every replica's
scrape endpoint afterwards (sum over replicas = expected).

Nothing is pinned to a core: with 2 cores, the processors and PostgreSQL share them (the sender is cheap: no
client-side protobuf work). ``--pending`` then writes N pending predictions through ``PostgresJoinStore.ingest`` +
``commit`` in batches of 20 000, reports the table, index and WAL sizes and the server's memory, starts a processor
on that store and sends 100 000 events (labels joining random pending predictions + new predictions).

Run: ``.venv/bin/python benchmarks/bench_postgres.py [--requests 150] [--rounds 2] [--replicas 1,2,3]
[--pending 10000000]``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from otel_ml.processor.records import join_key  # noqa: E402
from otel_ml.processor.store.postgres import PostgresJoinStore  # noqa: E402
from tests.support import otlp_events as ev  # noqa: E402
from tests.support.grpc_sender import send_requests  # noqa: E402
from tests.support.postgres import PG_PASSWORD, PG_PASSWORD_ENV, PostgresServer  # noqa: E402
from tests.support.procs import free_port, http_ok, tcp_open, wait_until  # noqa: E402
from tests.support.workload import PER_REQUEST, benchmark_requests, label, prediction  # noqa: E402


def start_processor(tmp: Path, store: dict[str, Any], name: str,
                    root: Path = ROOT) -> tuple[subprocess.Popen[bytes], int, int]:
    grpc_port, prom_port = free_port(), free_port()
    cfg = {"instance_id": name, "receiver": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}, "http": None},
           "store": store, "metrics": {"otlp": None, "prometheus": {"endpoint": f"127.0.0.1:{prom_port}"}}}
    path = tmp / f"processor-{name}-{grpc_port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = open(tmp / f"processor-{name}-{grpc_port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "otel_ml.processor", "--config", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=root, env={**os.environ, PG_PASSWORD_ENV: PG_PASSWORD})
    wait_until(lambda: tcp_open(grpc_port) and http_ok(f"http://127.0.0.1:{prom_port}/metrics"), 90,
               what=f"processor {name}")
    return proc, grpc_port, prom_port


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()


def scrape_total(prom_port: int, family: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/metrics", timeout=10) as resp:
        lines = resp.read().decode().splitlines()
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines if ln.startswith(family + "{") or ln.startswith(family + " "))


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def server_pids(server: PostgresServer) -> list[int]:
    pid = server.postmaster_pid()
    assert pid is not None
    return [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]


def wal_lsn(server: PostgresServer) -> str:
    """The server's WAL insert position (over a psycopg connection: a psql subprocess forked from this process, which
    has gRPC threads by then, can hang in ``preexec_fn``)."""
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    return str(row[0])


def wal_bytes_since(server: PostgresServer, lsn: str) -> float:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (lsn,)).fetchone()
    assert row is not None
    return float(row[0])


def run_once(tmp: Path, bodies: list[bytes], store: dict[str, Any], replicas: int,
             server: PostgresServer | None, inflight: int = 4, root: Path = ROOT) -> dict[str, float]:
    procs, ports, proms = [], [], []
    try:
        for r in range(replicas):
            p, port, prom = start_processor(tmp, store, f"bench-{r}", root)
            procs.append(p)
            ports.append(port)
            proms.append(prom)
        warm, rest = bodies[:10], bodies[10:]
        send_requests(ports, warm)
        pg0 = cpu(server_pids(server)) if server else 0.0
        lsn0 = wal_lsn(server) if server else ""
        cpu0 = cpu([p.pid for p in procs])
        elapsed, acked = send_requests(ports, rest, inflight)
        proc_cpu = cpu([p.pid for p in procs]) - cpu0
        pg_cpu = (cpu(server_pids(server)) - pg0) if server else 0.0
        wal = wal_bytes_since(server, lsn0) if server else 0.0
        time.sleep(1.5)
        joins = sum(scrape_total(port, "ml_processor_joins_total") for port in proms)
        rss = max(psutil.Process(p.pid).memory_info().rss for p in procs)
    finally:
        stop(procs)
    events = acked * PER_REQUEST
    expected = (len(bodies) - 2) * PER_REQUEST // 2
    return {"events/s": events / elapsed, "proc us/event": 1e6 * proc_cpu / events,
            "pg us/event": 1e6 * pg_cpu / events, "wal B/event": wal / events, "joins ok": float(joins == expected), "joins": joins,
            "rss MB": rss / 2**20, "seconds": elapsed}


def throughput(tmp: Path, server: PostgresServer, n_requests: int, rounds: int, replica_counts: list[int],
               inflight: int, variants: Sequence[tuple[str, Path]] = ()) -> None:
    configs: list[tuple[str, Path, int]] = [("sqlite x1", ROOT, 1)]
    configs += [(f"postgres x{n}", ROOT, n) for n in replica_counts]
    configs += [(f"postgres x{n} {name}", tree, n) for name, tree in variants for n in replica_counts]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in configs}
    dsn = server.dsn(password=None).replace("otelml@", "otelml:${env:" + PG_PASSWORD_ENV + "}@", 1)
    order = list(enumerate(configs))
    for rnd in range(rounds):
        random.Random(rnd).shuffle(order)  # the load drifts within a round: no configuration always runs first
        for i, (name, root, n) in order:
            bodies = benchmark_requests(n_requests)  # fresh ids per run
            if name.startswith("sqlite"):
                store = {"backend": "sqlite", "path": str(tmp / f"bench-{rnd}.db")}
                r = run_once(tmp, bodies, store, 1, None, inflight)
            else:
                store = {"backend": "postgres", "dsn": dsn, "schema": f"bench_{rnd}_{i}"}
                r = run_once(tmp, bodies, store, n, server, inflight, root)
            r["load"] = os.getloadavg()[0]
            results[name].append(r)
            print(f"  round {rnd + 1} {name:12s}: {r['events/s']:9,.0f} events/s, processors {r['proc us/event']:5.1f} "
                  f"µs CPU/event, PostgreSQL {r['pg us/event']:5.1f} µs CPU/event, WAL {r['wal B/event']:4.0f} B/event, joins "
                  f"{'ok' if r['joins ok'] else 'MISMATCH ' + str(r['joins'])}, RSS {r['rss MB']:.0f} MB, load "
                  f"{r['load']:.1f}", flush=True)
    base = statistics.median(r["events/s"] for r in results["sqlite x1"])
    print(f"\nmedians over {rounds} rounds ({n_requests} requests of {PER_REQUEST} records each, {inflight} in "
          f"flight); load average {min(r['load'] for rs in results.values() for r in rs):.1f}-"
          f"{max(r['load'] for rs in results.values() for r in rs):.1f}; 'per round' = median of each round's ratio to "
          "that round's SQLite run:")
    print("| store | replicas | events/s | vs SQLite x1 | per round | processor CPU µs/event | PostgreSQL CPU µs/event | "
          "WAL bytes/event |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, _, n in configs:
        rs = results[name]
        eps = statistics.median(r["events/s"] for r in rs)
        per_round = statistics.median(r["events/s"] / s["events/s"] for r, s in zip(rs, results["sqlite x1"],
                                                                                      strict=True))
        label = name.split()[0] + (f" ({name.split(maxsplit=2)[2]})" if len(name.split()) > 2 else "")
        print(f"| {label} | {n} | {eps:,.0f} | {eps / base:.2f} | {per_round:.2f} | "
              f"{statistics.median(r['proc us/event'] for r in rs):.1f} | "
              f"{statistics.median(r['pg us/event'] for r in rs):.1f} | "
              f"{statistics.median(r['wal B/event'] for r in rs):.0f} |")


def pending(tmp: Path, server: PostgresServer, n: int, batch: int = 20_000) -> None:
    schema = "bench_pending"
    store = PostgresJoinStore(server.dsn(), 7 * 86400.0, 20_000_000, "bench-writer", schema=schema)
    me = psutil.Process()
    start = time.perf_counter()
    now = time.time()
    for b in range(0, n, batch):
        rows = [(join_key("fraud", f"id-{i}"), now, "fraud", "2024-06-01", "binary", "channel=web,region=eu",
                 "1" if i % 3 == 0 else "0", None, random.random(), "1", None, now, None, None, None, None, None)
                for i in range(b, min(b + batch, n))]
        store.ingest(rows, [], now)
        store.commit({})
        if (b // batch) % 50 == 0:
            print(f"  {b + len(rows):>10,} pending, {time.perf_counter() - start:7.1f} s, writer RSS "
                  f"{me.memory_info().rss / 2**20:.0f} MB", flush=True)
    elapsed = time.perf_counter() - start
    store.close()
    server.psql("CHECKPOINT", "otelml")
    server.psql(f"VACUUM ANALYZE {schema}.joins", "otelml")
    sizes = server.psql(
        f"SELECT pg_relation_size('{schema}.joins'), pg_indexes_size('{schema}.joins'), "
        f"pg_total_relation_size('{schema}.joins'), pg_database_size('otelml'), "
        f"(SELECT count(*) FROM {schema}.joins WHERE joined IS NULL)", "otelml").split("|")
    heap, idx, total, db, count = (int(x) for x in sizes)
    wal = sum(f.stat().st_size for f in (server.data / "pg_wal").glob("0*"))
    pg_rss = sum(psutil.Process(pid).memory_info().rss for pid in server_pids(server))
    print(f"pending: {n:,} predictions written in {elapsed:.0f} s ({n / elapsed:,.0f}/s); PostgreSQL: rows {count:,}, "
          f"heap {heap / 2**20:,.0f} MB, indexes {idx / 2**20:,.0f} MB (primary key + arrival), total "
          f"{total / 2**20:,.0f} MB ({total / n:.0f} bytes per pending prediction), database {db / 2**20:,.0f} MB, "
          f"pg_wal {wal / 2**20:,.0f} MB; server processes RSS {pg_rss / 2**20:,.0f} MB (shared_buffers 128 MB)",
          flush=True)
    recs, bodies = [], []
    ts = time.time_ns()
    for i in range(50_000):
        recs.append(label(i * 97 % n, ts))
        recs.append(prediction(n + i, ts))
        if len(recs) == PER_REQUEST:
            bodies.append(ev.request(recs).SerializeToString())
            recs = []
    dsn = server.dsn(password=None).replace("otelml@", "otelml:${env:" + PG_PASSWORD_ENV + "}@", 1)
    proc, port, prom = start_processor(tmp, {"backend": "postgres", "dsn": dsn, "schema": schema}, "pending")
    try:
        seconds, _ = send_requests([port], bodies)
        time.sleep(2)
        rss = psutil.Process(proc.pid).memory_info().rss
        pend = scrape_total(prom, "ml_processor_store_pending")
        joins = scrape_total(prom, "ml_processor_joins_total")
    finally:
        stop([proc])
    print(f"a processor on that store, 100 000 events (50 000 labels joining random pending predictions + 50 000 new "
          f"predictions): {100_000 / seconds:,.0f} events/s, {joins:,.0f} joins, RSS {rss / 2**20:.0f} MB, pending "
          f"gauge {pend:,.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=150, help="1000-record requests per run")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of every configuration")
    ap.add_argument("--replicas", default="1,2,3", help="replica counts on PostgreSQL")
    ap.add_argument("--inflight", type=int, default=4, help="requests in flight (the collector's num_consumers)")
    ap.add_argument("--pending", type=int, default=0, help="pending predictions for the footprint run (0: skip)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=TREE",
                    help="also run the processor replicas (every --replicas count) from another source tree (e.g. a "
                         "worktree of an earlier commit, its C extension built), side by side in the same rounds")
    args = ap.parse_args()
    random.seed(1)
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as d:
        tmp = Path(d)
        server = PostgresServer().start()
        try:
            print(f"PostgreSQL {server.psql('SHOW server_version')} at {server.dsn(password=None)}; "
                  f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
            if args.requests:
                variants = [(v.split("=", 1)[0], Path(v.split("=", 1)[1]).resolve()) for v in args.variant]
                throughput(tmp, server, args.requests, args.rounds,
                           [int(x) for x in args.replicas.split(",") if x], args.inflight, variants)
            if args.pending:
                pending(tmp, server, args.pending)
        finally:
            server.close()
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
