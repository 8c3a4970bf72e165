"""Machine faults under a real ``otel-ml processor`` process: the disk fills up during traffic and is grown, the
filesystem turns read-only and then shuts down (I/O errors) and is repaired, a stored row is damaged on disk.

The client behaves like the collector's exporter: it re-sends every request that was not acknowledged until it is,
and the processor is never restarted (its pid is checked). Every test ends with the processor's own counters,
scraped from its Prometheus endpoint, equal to the truth computed from what the client sent: zero missing, zero
counted twice, and the failures counted by kind.
"""

from __future__ import annotations

import sqlite3
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from otel_ml.semconv import metrics as m
from otel_ml.semconv.prometheus import prom_name
from tests.processor.conftest import label_event, prediction_event
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev
from tests.support.faultfs import Ext4Loop, Tmpfs
from tests.support.grpc_sender import EXPORT
from tests.support.procs import wait_until

pytestmark = pytest.mark.integration

PAD = "x" * 160
"""Class names are long so that the store grows fast (3 distinct classes: no cardinality cost)."""


@dataclass
class Workload:
    """``n`` requests of ``per`` predictions, each with the labels of the previous request's predictions."""

    n: int
    per: int
    bodies: list[bytes] = field(default_factory=list)
    labeled: int = 0
    correct: int = 0

    def __post_init__(self) -> None:
        for r in range(self.n):
            recs = []
            for j in range(self.per):
                i = r * self.per + j
                recs.append(prediction_event(f"p{i}", task="multiclass", value=f"{i % 3}{PAD}"))
                if r > 0:
                    k = i - self.per
                    truth = f"{k % 3}{PAD}" if k % 4 else f"{(k + 1) % 3}{PAD}"
                    recs.append(label_event(f"p{k}", value=truth))
                    self.labeled += 1
                    self.correct += int(k % 4 != 0)
            self.bodies.append(ev.request(recs).SerializeToString())


class Client:
    """Sends raw OTLP requests over gRPC; remembers what was acknowledged and what each failure answered."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.export = self.channel.unary_unary(EXPORT, request_serializer=lambda b: b,
                                               response_deserializer=lambda b: b)
        self.acked: set[int] = set()
        self.answers: Counter[str] = Counter()
        self._lock = threading.Lock()

    def send(self, idx: int, body: bytes) -> bool:
        try:
            self.export(body, timeout=40)
        except grpc.RpcError as exc:
            with self._lock:
                self.answers[exc.code().name] += 1
            return False
        with self._lock:
            self.acked.add(idx)
            self.answers["OK"] += 1
        return True

    def send_all(self, work: Workload, indexes: Iterable[int], threads: int = 4) -> int:
        """One attempt for each of ``indexes`` not acknowledged yet (4 in flight); returns how many failed."""
        todo = [i for i in indexes if i not in self.acked]
        with ThreadPoolExecutor(threads) as pool:
            return sum(not ok for ok in pool.map(lambda i: self.send(i, work.bodies[i]), todo))

    def resend_until_acked(self, work: Workload, timeout: float = 90.0) -> int:
        """The exporter's retry: every request not acknowledged, again and again; returns the rounds it took."""
        deadline = time.monotonic() + timeout
        rounds = 0
        while len(self.acked) < work.n:
            assert time.monotonic() < deadline, f"{work.n - len(self.acked)} requests never acknowledged"
            rounds += 1
            if self.send_all(work, range(work.n)):
                time.sleep(0.2)
        return rounds

    def close(self) -> None:
        self.channel.close()


def _errors(proc: ProcessorProcess, kind: str) -> float:
    return sum(v for k, v in proc.scrape().items()
               if k.startswith(prom_name(m.PROCESSOR_STORE_ERRORS)) and f'ml_reason="{kind}"' in k)


def _assert_truth(proc: ProcessorProcess, work: Workload) -> None:
    assert proc.total(prom_name(m.PREDICTIONS)) == work.n * work.per
    assert proc.total(prom_name(m.LABELS)) == work.labeled
    assert proc.total(prom_name(m.LABELED_PREDICTIONS)) == work.labeled
    assert proc.total(prom_name(m.PROCESSOR_JOINS)) == work.labeled
    assert proc.total(prom_name(m.CORRECT_PREDICTIONS)) == work.correct
    assert proc.total(prom_name(m.EXPIRED_PREDICTIONS)) == 0 and proc.total(prom_name(m.ORPHANED_LABELS)) == 0
    # the pending gauge is set by the next tick (every second): the last request's predictions wait for labels
    wait_until(lambda: proc.total(prom_name(m.PROCESSOR_STORE_PENDING)) == work.per, timeout=10,
               what=f"{work.per} pending records")


def _pending_in_file(path: Path) -> int:
    """Pending rows in the store file (processor stopped): what the in-memory count must have been."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM pending WHERE length(row) > 1").fetchone()[0])
    finally:
        db.close()


def test_disk_full_during_traffic_then_grown_without_restart(tmp_path: Path) -> None:
    fs = Tmpfs(tmp_path / "fs", 16 * 2**20)
    proc = ProcessorProcess(tmp_path, store={"path": str(fs.path / "store" / "store.db")})
    client = None
    try:
        proc.start()
        pid = proc.process.pid
        work = Workload(400, 100)
        client = Client(proc.grpc_port)
        assert client.send_all(work, range(60)) == 0
        fs.fill()  # the disk is full while the senders go on
        failed = client.send_all(work, range(60, work.n))
        assert failed > 0 and client.answers["UNAVAILABLE"] == failed, client.answers
        assert _errors(proc, "full") >= 1
        unacked = work.n - len(client.acked)
        client.send_all(work, range(work.n))  # still full (a step needing no new block may commit: that is fine)
        fs.grow(256 * 2**20)  # grown, the filler still there; no restart
        rounds = client.resend_until_acked(work)
        assert proc.process.pid == pid and proc.process.alive()
        for idx in range(0, work.n, 7):  # a few late duplicates (acknowledged requests re-sent) change nothing
            assert client.send(idx, work.bodies[idx])
        _assert_truth(proc, work)
        print(f"\ndisk full: {failed} of {work.n - 60} requests UNAVAILABLE while full, {unacked} unacknowledged, "
              f"all acknowledged after growing in {rounds} rounds; answers {dict(client.answers)}; "
              f"store errors (full) {_errors(proc, 'full'):.0f}")
        assert proc.process.stop() == 0
        assert _pending_in_file(fs.path / "store" / "store.db") == work.per
    finally:
        if client is not None:
            client.close()
        proc.process.stop()
        fs.umount()


def test_filesystem_readonly_then_io_errors_heal_without_restart(tmp_path: Path) -> None:
    fs = Ext4Loop(tmp_path / "ext4", 64)
    # synchronous=FULL: an acknowledged commit is on disk (with NORMAL, the last commits before a filesystem shuts
    # down live only in the page cache and are lost with it, as on a power loss: see otel_ml.processor.store.sqlite)
    proc = ProcessorProcess(tmp_path, store={"path": str(fs.path / "store" / "store.db")})
    proc.process.env["OTEL_ML_SQLITE_SYNCHRONOUS"] = "FULL"
    client = None
    try:
        proc.start()
        pid = proc.process.pid
        work = Workload(300, 100)
        client = Client(proc.grpc_port)
        assert client.send_all(work, range(50)) == 0

        # 1. a filesystem error: the kernel turns it read-only under the running processor. Injected between two
        # commits: ext4 aborting its journal can drop the last transaction even after its fsync returned (seen in
        # 1 of 8 runs of a plain SQLite write loop, without otel-ml), which no store can make up for.
        assert client.send_all(work, range(50, 100)) == 0
        fs.sync()
        fs.fail_readonly()
        assert client.send_all(work, range(100, 150)) == 50  # every request fails, none is acknowledged
        assert _errors(proc, "readonly") >= 1
        # the processor released its files (the unmount waits for it): repair, mount read-only first
        waited = fs.repair(readonly=True)
        before = _errors(proc, "readonly")
        time.sleep(5.5)  # the longest reopen backoff: at least one reopen attempt on the read-only mount
        assert client.send_all(work, range(50, 150)) > 0
        assert _errors(proc, "readonly") > before
        fs.remount_rw()
        rounds_ro = _resend_range(client, work, range(150))

        # 2. the filesystem shuts down (every I/O fails with EIO), then is repaired
        assert client.send_all(work, range(150, 200)) == 0
        sender = threading.Thread(target=client.send_all, args=(work, range(200, 300)))
        sender.start()
        time.sleep(0.05)
        fs.shut_down()
        sender.join(120)
        assert client.send_all(work, range(200, 300)) > 0
        assert _errors(proc, "io") >= 1
        fs.repair()
        rounds_io = client.resend_until_acked(work)

        assert proc.process.pid == pid and proc.process.alive()
        _assert_truth(proc, work)
        print(f"\nread-only: files released {waited:.2f}s after the error, {rounds_ro} rounds after remount; "
              f"I/O errors: {rounds_io} rounds after repair; answers {dict(client.answers)}; errors: readonly "
              f"{_errors(proc, 'readonly'):.0f}, io {_errors(proc, 'io'):.0f}")
        assert proc.process.stop() == 0
        assert _pending_in_file(fs.path / "store" / "store.db") == work.per
    finally:
        if client is not None:
            client.close()
        proc.process.stop()
        fs.umount()


def _resend_range(client: Client, work: Workload, indexes: range, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    rounds = 0
    while any(i not in client.acked for i in indexes):
        assert time.monotonic() < deadline, "requests never acknowledged after the repair"
        rounds += 1
        if client.send_all(work, indexes):
            time.sleep(0.2)
    return rounds


def _corrupt_on_disk(path: Path, keys: list[str]) -> None:
    """Damage the stored rows of ``keys`` in the database file itself: the first byte of each row's payload."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = {k: (a, bytes(r)) for k, a, r in db.execute(
            f"SELECT k, arrived, row FROM pending WHERE k IN ({','.join('?' * len(keys))})", keys)}
    finally:
        db.close()
    data = bytearray(path.read_bytes())
    for k in keys:
        arrived, row = found[k]
        record = k.encode() + struct.pack(">d", arrived) + row  # key, arrival (REAL, big-endian) and row, in order
        at = data.find(record)
        assert at >= 0 and data.find(record, at + 1) < 0, k
        data[at + len(record) - len(row)] = 0x00  # no marshal type has code 0: the row no longer decodes
    path.write_bytes(bytes(data))


def test_row_damaged_on_disk_is_quarantined_and_blocks_nothing(tmp_path: Path) -> None:
    window = 6.0
    proc = ProcessorProcess(tmp_path, store={"label_window": f"{window}s", "expire_interval": "1s"})
    client = None
    try:
        proc.start()
        client = Client(proc.grpc_port)
        preds = [ev.request([prediction_event(f"q{i}", task="multiclass", value=str(i % 3))
                             for i in range(r * 50, r * 50 + 50)]).SerializeToString() for r in range(4)]
        for i, body in enumerate(preds):
            assert client.send(i, body)
        assert proc.process.stop() == 0  # the WAL is checkpointed into the file at close
        _corrupt_on_disk(tmp_path / "store.db", ["m\x1fq7", "m\x1fq150"])
        proc.start()
        # labels for q0..q99: q7's prediction is met damaged (quarantined: its label waits, then is orphaned);
        # q100..q199 never get one: they expire, q150 is met damaged by the sweep (quarantined, the sweep goes on)
        labels = ev.request([label_event(f"q{i}", value=str(i % 3)) for i in range(100)]).SerializeToString()
        assert client.send(100, labels)
        deadline = time.monotonic() + 30
        while proc.total(prom_name(m.PROCESSOR_STORE_PENDING)) != 0 or \
                proc.total(prom_name(m.EXPIRED_PREDICTIONS)) < 99:
            assert time.monotonic() < deadline, proc.scrape()
            time.sleep(0.5)
        # the damaged keys accept records again: q150 as a fresh pair joins
        pair = ev.request([prediction_event("q150", task="multiclass", value="0",
                                            **{"ml.label.value": "0"})]).SerializeToString()
        assert client.send(101, pair)
        assert proc.total(prom_name(m.PROCESSOR_STORE_QUARANTINED)) == 2
        assert proc.total(prom_name(m.LABELED_PREDICTIONS)) == 99 + 1  # q0..q99 but q7, and the q150 pair
        assert proc.total(prom_name(m.CORRECT_PREDICTIONS)) == 100
        assert proc.total(prom_name(m.EXPIRED_PREDICTIONS)) == 99  # q100..q199 but q150
        assert proc.total(prom_name(m.ORPHANED_LABELS)) == 1  # q7's label
        assert proc.total(prom_name(m.PREDICTIONS)) == 201  # 200 + the q150 pair (its first copy was lost)
        assert proc.total(prom_name(m.PROCESSOR_STORE_PENDING)) == 0
        log = proc.process.log(20000)
        assert log.count("moved to the quarantine") == 2 and "q7" in log and "q150" in log
        rows = sqlite3.connect(tmp_path / "store.db").execute("SELECT k, reason FROM quarantine").fetchall()
        assert sorted(k for k, _ in rows) == ["m\x1fq150", "m\x1fq7"]
        assert proc.process.stop() == 0
    finally:
        if client is not None:
            client.close()
        proc.process.stop()
