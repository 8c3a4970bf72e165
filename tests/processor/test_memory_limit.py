"""The memory limiter for real: many slow, large, concurrent uploads over HTTP (identity, chunked, gzip) and gRPC
against a processor with a hard limit; its RSS (``/proc/<pid>/status``: VmRSS sampled every 20 ms, and VmHWM, the
kernel's own peak) never passes the hard limit, requests are refused with retryable answers before their bodies
are read, and every refused request's data arrives when its client retries (the totals equal the truth)."""

from __future__ import annotations

import gzip
import http.client
import threading
import time
from pathlib import Path

import grpc
import pytest

from tests.processor.conftest import prediction_event
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev
from tests.support.grpc_sender import EXPORT
from tests.support.procs import proc_status

pytestmark = pytest.mark.integration

MIB = 1 << 20
HARD_MIB, SPIKE_MIB = 400, 100
MAX_REQUEST = 16 * MIB
RECORDS = 2800  # ~14 MiB per request (records padded with a 5 kB attribute the decoder ignores)


def _request(tag: str) -> bytes:
    return ev.request([prediction_event(f"{tag}-{i}", padding="x" * 5000) for i in range(RECORDS)]
                      ).SerializeToString()


class Client(threading.Thread):
    """Sends its requests one after another, each until acknowledged (retrying refusals like an OTLP exporter)."""

    def __init__(self, proc: ProcessorProcess, kind: str, bodies: list[bytes]) -> None:
        super().__init__(daemon=True)
        self.proc, self.kind, self.bodies = proc, kind, bodies
        self.acked = 0
        self.refusals: dict[str, int] = {}
        self.error: BaseException | None = None

    def _refused(self, why: str) -> None:
        self.refusals[why] = self.refusals.get(why, 0) + 1
        time.sleep(0.05)

    def _http(self, body: bytes) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.proc.http_port, timeout=60)
        try:
            headers = {"Content-Type": "application/x-protobuf"}
            if self.kind == "http-gzip":
                body = gzip.compress(body, 1)
                headers["Content-Encoding"] = "gzip"
            conn.putrequest("POST", "/v1/logs")
            for k, v in headers.items():
                conn.putheader(k, v)
            chunked = self.kind == "http-chunked"
            conn.putheader("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else
                           str(len(body)))
            conn.endheaders()
            for i in range(0, len(body), 1024 * 1024):  # a slow upload: 1 MiB every 20 ms
                piece = body[i:i + 1024 * 1024]
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                time.sleep(0.02)
            if chunked:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return True
            assert resp.status == 503 and resp.getheader("Retry-After"), resp.status
            self._refused(str(resp.status))
        except (BrokenPipeError, ConnectionResetError):  # refused before the body was read, while still sending
            self._refused("reset")
        finally:
            conn.close()
        return False

    def _grpc(self, body: bytes) -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{self.proc.grpc_port}",
                                   options=[("grpc.max_send_message_length", 64 * MIB)]) as channel:
            try:
                channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)(body, timeout=60)
                return True
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc  # type: ignore[attr-defined]
                self._refused("UNAVAILABLE")
        return False

    def run(self) -> None:
        try:
            for body in self.bodies:
                deadline = time.monotonic() + 120
                while not (self._grpc(body) if self.kind == "grpc" else self._http(body)):
                    assert time.monotonic() < deadline, "never accepted"
                self.acked += 1
        except BaseException as exc:  # reported by the test
            self.error = exc


def test_rss_never_passes_the_hard_limit_and_refused_data_arrives(tmp_path: Path) -> None:
    proc = ProcessorProcess(tmp_path, receiver={"max_request_bytes": MAX_REQUEST, "max_inflight_requests": 32},
                            memory_limiter={"check_interval": "100ms", "limit_mib": HARD_MIB,
                                            "spike_limit_mib": SPIKE_MIB}).start()
    kinds = ["http"] * 8 + ["http-chunked"] * 5 + ["http-gzip"] * 3 + ["grpc"] * 6
    per_client = 1
    clients = [Client(proc, kind, [_request(f"c{c}-r{r}") for r in range(per_client)])
               for c, kind in enumerate(kinds)]
    pid = proc.process.pid
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                samples.append(proc_status(pid, "VmRSS:"))
            except (OSError, KeyError):
                return
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        baseline = proc_status(pid, "VmRSS:")
        sampler.start()
        for c in clients:
            c.start()
        for c in clients:
            c.join(180)
        stop.set()
        sampler.join(5)
        errors = [(c.kind, c.error) for c in clients if c.error is not None or c.is_alive()]
        assert errors == []
        peak = proc_status(pid, "VmHWM:")
        refusals = sum(v for k, v in proc.scrape().items()
                       if k.startswith("ml_processor_requests_refused_total{") and 'ml_reason="memory_limit"' in k)
        sent = len(kinds) * per_client * RECORDS
        print(f"RSS baseline {baseline / MIB:.0f} MiB, sampled max {max(samples) / MIB:.0f} MiB over {len(samples)} "
              f"samples, VmHWM {peak / MIB:.0f} MiB, hard limit {HARD_MIB} MiB; memory_limit refusals {refusals:.0f}; "
              f"client-side refusals {[c.refusals for c in clients]}")
        assert peak <= HARD_MIB * MIB and max(samples) <= HARD_MIB * MIB
        assert refusals > 0, "the load never reached the soft limit: the test proves nothing"
        assert proc.total("ml_predictions_total") == sent
    finally:
        stop.set()
        proc.process.stop()
        print("\n".join(ln for ln in proc.process.log(200_000).splitlines() if "memory limiter" in ln)[-3000:])
