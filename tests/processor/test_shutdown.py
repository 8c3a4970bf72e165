"""Graceful shutdown, for real and many times: SIGTERM a processor under concurrent gRPC + HTTP load, again and again.

Each run must exit 0 within ``shutdown_grace``. Senders behave like OTLP exporters: a request that was not
acknowledged (refused, connection lost, no answer) is sent again later, to the next incarnation. At the end every
request has been acknowledged once, and the processor's counters (scraped from its Prometheus endpoint, restored
from the store across the 20+ restarts) equal the truth computed from what was sent: nothing lost, nothing counted
twice. The signal lands on whatever thread the kernel picks (grpc's, the HTTP server's, the writer's): before this
round, the main thread sometimes never woke up and the process needed SIGKILL.
"""

from __future__ import annotations

import collections
import http.client
import queue
import signal
import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.processor.conftest import prediction_event
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev
from tests.support.grpc_sender import EXPORT
from tests.support.procs import wait_until

pytestmark = pytest.mark.integration

RUNS = 22
SIGINT_RUNS = (10, 21)
"""Runs stopped with SIGINT (Ctrl-C) instead of SIGTERM: 20 SIGTERMs and 2 SIGINTs."""
GRACE_S = 5.0
PER_REQUEST = 40


def _body(i: int) -> bytes:
    """Request ``i``: PER_REQUEST multiclass predictions with ids of their own."""
    return ev.request([prediction_event(f"r{i}-{j}", task="multiclass", value=str(j % 3))
                       for j in range(PER_REQUEST)]).SerializeToString()


class Senders:
    """2 gRPC + 2 HTTP senders working off one queue of unacknowledged requests (re-queued on any failure).

    While ``generating`` is set, a sender that finds the queue empty makes a new request, so the load never runs out
    however fast the processor is; :meth:`finish` stops that, and the last incarnation drains what is left.
    """

    def __init__(self, proc: ProcessorProcess) -> None:
        self.proc = proc
        self.todo: queue.Queue[int] = queue.Queue()
        self.bodies: dict[int, bytes] = {}
        self.generating = True
        self.acked: set[int] = set()
        self.failures: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._grpc, daemon=True) for _ in range(2)]
        self.threads += [threading.Thread(target=self._http, daemon=True) for _ in range(2)]
        for t in self.threads:
            t.start()

    def _next(self) -> int | None:
        try:
            return self.todo.get_nowait()
        except queue.Empty:
            pass
        with self.lock:
            if self.generating:
                i = len(self.bodies)
                self.bodies[i] = _body(i)
                return i
        try:
            return self.todo.get(timeout=0.05)
        except queue.Empty:
            return None

    def finish(self) -> int:
        """Stop making new requests; returns how many were made (each must end acknowledged)."""
        with self.lock:
            self.generating = False
            return len(self.bodies)

    def _done(self, i: int, ok: bool, why: str = "") -> None:
        if ok:
            with self.lock:
                self.acked.add(i)
        else:
            with self.lock:
                self.failures[why] += 1
            self.todo.put(i)
            time.sleep(0.02)  # back off a little, as exporters do

    def _grpc(self) -> None:
        channel = grpc.insecure_channel(f"127.0.0.1:{self.proc.grpc_port}")
        export = channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        while not self.stop.is_set():
            i = self._next()
            if i is None:
                continue
            try:
                export(self.bodies[i], timeout=5)
                self._done(i, True)
            except grpc.RpcError as exc:
                self._done(i, False, f"grpc {exc.code()}")  # type: ignore[attr-defined]
        channel.close()

    def _http(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stop.is_set():
            i = self._next()
            if i is None:
                continue
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.proc.http_port, timeout=5)
                conn.request("POST", "/v1/logs", body=self.bodies[i],
                             headers={"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                self._done(i, resp.status == 200, f"http {resp.status}")
                if resp.status != 200 or resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                conn = None
                self._done(i, False, f"http {type(exc).__name__}")

    def acknowledged(self) -> int:
        with self.lock:
            return len(self.acked)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def test_repeated_sigterm_and_sigint_under_load_exit_in_time_and_lose_nothing(tmp_path: Path) -> None:
    proc = ProcessorProcess(tmp_path, shutdown_grace=f"{GRACE_S:g}s", receiver={"max_inflight_requests": 4})
    senders = Senders(proc)
    exits: list[tuple[int | None, float]] = []
    try:
        for run in range(RUNS):
            proc.start()
            before = senders.acknowledged()
            try:
                wait_until(lambda b=before: senders.acknowledged() >= b + 8, timeout=60, what="load on this run")
            except TimeoutError as exc:
                raise AssertionError(f"no load: failures {senders.failures}\n{proc.process.log()}") from exc
            assert proc.process.proc is not None
            signalled = time.monotonic()
            # while the senders keep sending
            proc.process.proc.send_signal(signal.SIGINT if run in SIGINT_RUNS else signal.SIGTERM)
            try:
                rc = proc.process.proc.wait(GRACE_S + 10)
            except Exception:
                rc = None
            exits.append((rc, time.monotonic() - signalled))
            assert rc == 0 and exits[-1][1] <= GRACE_S, (exits, proc.process.log())
        # the last incarnation takes whatever is still unacknowledged
        n_requests = senders.finish()
        proc.start()
        wait_until(lambda: senders.acknowledged() == n_requests, timeout=120, what="every request acknowledged")
        senders.close()
        totals = proc.scrape()
        assert proc.total("ml_predictions_total") == n_requests * PER_REQUEST, totals
        assert proc.total("ml_processor_records_received_total") >= n_requests * PER_REQUEST
        refused = {k: v for k, v in totals.items() if k.startswith("ml_processor_requests_refused_total")}
        print(f"exits (rc, seconds after SIGTERM): {[(rc, round(s, 2)) for rc, s in exits]}; refusals: {refused}")
    finally:
        senders.close()
        proc.process.stop()
