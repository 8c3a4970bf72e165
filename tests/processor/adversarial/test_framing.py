"""Adversarial framing against a real processor process: raw HTTP/1.x bytes, gRPC misuse, TLS garbage.

One processor (small limits so that the cases are quick) serves every case of the module. Each case asserts the
answer (status line, gRPC code, or a closed connection), the self-metric that counts it (scraped from the
processor's Prometheus endpoint), that a canary request sent afterwards is acknowledged and committed, and that the
processor's RSS stays bounded (``/proc/<pid>/status``: VmRSS after the case, VmHWM for the peak over the module).
"""

from __future__ import annotations

import gzip
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from prometheus_client.parser import text_string_to_metric_families

from otel_ml.semconv import attributes as a
from tests.processor.conftest import prediction_event
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev
from tests.support.grpc_sender import EXPORT
from tests.support.procs import proc_status

pytestmark = pytest.mark.integration

LIMIT = 1 << 20
MAX_CONNECTIONS = 12
HEADER_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 1.5
RSS_SLACK = 64 << 20
"""Bound of the RSS growth over the module (the largest body is 1 MiB; the memory limiter reserves 8x per byte)."""


@dataclass
class Target:
    proc: ProcessorProcess
    rss0: int
    canaries: int = 0

    @property
    def pid(self) -> int:
        assert self.proc.process.proc is not None
        return self.proc.process.proc.pid

    def counter(self, family: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.proc.prom_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
                   if s.name == family and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp: Path = tmp_path_factory.mktemp("adversarial")
    proc = ProcessorProcess(tmp, receiver={
        "max_request_bytes": LIMIT, "max_inflight_requests": 4, "grpc": {"max_connections": MAX_CONNECTIONS},
        "http": {"max_connections": MAX_CONNECTIONS, "read_header_timeout": f"{HEADER_TIMEOUT_S}s",
                 "read_timeout": f"{READ_TIMEOUT_S}s", "idle_timeout": "2s"}}).start()
    try:
        yield Target(proc, proc_status(proc.process.pid, "VmRSS:"))
    finally:
        t = Target(proc, 0)
        peak = proc_status(t.pid, "VmHWM:") if proc.process.alive() else None
        proc.process.stop()
        print(f"adversarial module: VmHWM {peak}")


def _body(pid: str) -> bytes:
    return ev.request([prediction_event(pid)]).SerializeToString()


def raw(port: int, data: bytes | list[bytes], wait: float = 5.0, pause: float = 0.0) -> bytes:
    """Send ``data`` (in pieces with ``pause`` between them) and read until the server closes or ``wait`` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        for piece in data if isinstance(data, list) else [data]:
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(pause)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out


def post(body: bytes, *headers: bytes, version: bytes = b"HTTP/1.1", path: bytes = b"/v1/logs") -> bytes:
    head = [b"POST " + path + b" " + version, b"Host: processor", b"Content-Type: application/x-protobuf",
            b"Connection: close", *headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def status_of(response: bytes) -> int | None:
    """Status code of the first response (None: the connection closed without one)."""
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


def canary(t: Target) -> None:
    """A good request on a fresh connection is acknowledged and committed."""
    t.canaries += 1
    before = t.counter("ml_predictions_total")
    body = _body(f"canary-{t.canaries}-{time.monotonic_ns()}")
    assert status_of(raw(t.proc.http_port, post(body, b"Content-Length: %d" % len(body)))) == 200
    assert t.counter("ml_predictions_total") == before + 1


def _settled(t: Target, family: str, quiet_s: float = 1.0, wait_s: float = 10.0) -> float:
    """``family``'s value once it has not changed for ``quiet_s`` (at most ``wait_s``)."""
    value, since, deadline = t.counter(family), time.monotonic(), time.monotonic() + wait_s
    while time.monotonic() - since < quiet_s and time.monotonic() < deadline:
        time.sleep(0.1)
        now = t.counter(family)
        if now != value:
            value, since = now, time.monotonic()
    return value


def check(t: Target, case: Callable[[], Any], family: str, labels: dict[str, str], expected: float = 1) -> Any:
    """Run ``case``; assert ``family{labels}`` grew by ``expected``, a canary commits, and RSS stays bounded."""
    before = t.counter(family, **labels)
    result = case()
    deadline = time.monotonic() + 5
    while t.counter(family, **labels) < before + expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t.counter(family, **labels) == before + expected, (family, labels)
    canary(t)
    assert proc_status(t.pid, "VmRSS:") <= t.rss0 + RSS_SLACK
    return result


FAILED = "ml_processor_requests_failed_total"
REJECTED = "ml_processor_records_rejected_total"
REFUSED = "ml_processor_requests_refused_total"


def http(reason: str) -> dict[str, str]:
    return {"ml_reason": reason, "ml_receiver": "http"}


# --- HTTP/1.x framing ------------------------------------------------------------------------------------------------
def test_chunked_body_is_read_and_committed(target: Target) -> None:
    body = _body("chunked-1")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 7]), body[i:i + 7]) for i in range(0, len(body), 7))
    resp = check(target, lambda: raw(target.proc.http_port, post(chunks + b"0\r\n\r\n", b"Transfer-Encoding: chunked")),
                 "ml_predictions_total", {})
    assert status_of(resp) == 200


def test_chunked_body_over_the_limit_is_refused_while_streaming(target: Target) -> None:
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    pieces = [post(b"", b"Transfer-Encoding: chunked")] + [chunk] * 24  # 1.5 MiB > 1 MiB, never buffered whole
    resp = check(target, lambda: raw(target.proc.http_port, pieces), REJECTED, {"ml_reason": "too_large"})
    assert status_of(resp) == 413


@pytest.mark.parametrize("length", [b"-1", b"abc", b"12, 13", b"1e3", b" "])
def test_invalid_content_length_is_400(target: Target, length: bytes) -> None:
    body = _body("x")
    resp = check(target, lambda: raw(target.proc.http_port, post(body, b"Content-Length: " + length)), FAILED,
                 http("bad_request"))
    assert status_of(resp) == 400


def test_conflicting_duplicate_content_length_is_400(target: Target) -> None:
    body = _body("x")
    resp = check(target, lambda: raw(target.proc.http_port, post(body, b"Content-Length: %d" % len(body),
                                                                 b"Content-Length: %d" % (len(body) + 1))),
                 FAILED, http("bad_request"))
    assert status_of(resp) == 400


def test_declared_length_over_the_limit_is_413_without_reading(target: Target) -> None:
    # 71 MB declared and never sent: answered at once (no read), Expect: 100-continue never gets its 100
    resp = check(target, lambda: raw(target.proc.http_port, post(b"", b"Content-Length: 71000000",
                                                                 b"Expect: 100-continue"), wait=3),
                 REJECTED, {"ml_reason": "too_large"})
    assert status_of(resp) == 413 and b"100 Continue" not in resp


def test_gzip_bomb_is_413(target: Target) -> None:
    bomb = gzip.compress(b"\0" * (64 << 20), 9)  # 64 MiB in ~64 kB
    resp = check(target, lambda: raw(target.proc.http_port, post(bomb, b"Content-Encoding: gzip",
                                                                 b"Content-Length: %d" % len(bomb))),
                 REJECTED, {"ml_reason": "too_large"})
    assert status_of(resp) == 413


@pytest.mark.parametrize("payload", [b"\x1f\x8b\x08\x00garbage", gzip.compress(_body("t"))[:-12], b"not gzip"])
def test_bad_gzip_is_400(target: Target, payload: bytes) -> None:
    resp = check(target, lambda: raw(target.proc.http_port, post(payload, b"Content-Encoding: gzip",
                                                                 b"Content-Length: %d" % len(payload))),
                 REJECTED, {"ml_reason": "decode_error"})
    assert status_of(resp) == 400


def test_concatenated_gzip_members_are_read(target: Target) -> None:
    body = _body("gzip-members")
    payload = gzip.compress(body[:20]) + gzip.compress(body[20:])
    resp = check(target, lambda: raw(target.proc.http_port, post(payload, b"Content-Encoding: gzip",
                                                                 b"Content-Length: %d" % len(payload))),
                 "ml_predictions_total", {})
    assert status_of(resp) == 200


def test_truncated_body_times_out_with_408(target: Target) -> None:
    body = _body("truncated")
    resp = check(target, lambda: raw(target.proc.http_port, post(body[:10], b"Content-Length: %d" % len(body)),
                                     wait=READ_TIMEOUT_S + 3), FAILED, http("read_timeout"))
    assert status_of(resp) == 408


def test_client_gone_mid_body_is_counted(target: Target) -> None:
    def case() -> None:
        with socket.create_connection(("127.0.0.1", target.proc.http_port)) as s:
            s.sendall(post(b"\x0a\x05", b"Content-Length: 5000"))
            time.sleep(0.3)
    check(target, case, FAILED, http("client_disconnected"))


def test_slowloris_headers_are_cut_off(target: Target) -> None:
    pieces = [b"POST /v1/logs HTTP/1.1\r\n"] + [b"X-Slow-%d: a\r\n" % i for i in range(6)]
    started = time.monotonic()
    resp = check(target, lambda: raw(target.proc.http_port, pieces, pause=0.4, wait=HEADER_TIMEOUT_S + 3), FAILED,
                 http("header_timeout"))
    assert resp == b"" and time.monotonic() - started < HEADER_TIMEOUT_S + 5


def test_too_many_connections_get_503_and_retry_after(target: Target) -> None:
    def case() -> bytes:
        held = [socket.create_connection(("127.0.0.1", target.proc.http_port)) for _ in range(MAX_CONNECTIONS)]
        try:
            time.sleep(0.2)
            return raw(target.proc.http_port, b"", wait=2)
        finally:
            for s in held:
                s.close()
    resp = check(target, case, REFUSED, http("too_many_connections"))
    assert status_of(resp) == 503 and b"retry-after: 1" in resp.lower()


@pytest.mark.parametrize(("header", "body"), [(b"Content-Type: application/json", b"{}"),
                                              (b"Content-Encoding: br", b"x")])
def test_wrong_media_type_or_encoding_is_415(target: Target, header: bytes, body: bytes) -> None:
    data = post(body, header, b"Content-Length: %d" % len(body)).replace(
        b"Content-Type: application/x-protobuf\r\n", b"") if b"json" in header else \
        post(body, header, b"Content-Length: %d" % len(body))
    resp = check(target, lambda: raw(target.proc.http_port, data), FAILED, http("unsupported_media_type"))
    assert status_of(resp) == 415


def test_huge_headers_are_refused(target: Target) -> None:
    big = b"X-Big: " + b"a" * 40_000
    one_read = check(target, lambda: raw(target.proc.http_port, post(b"", big, b"Content-Length: 0")), FAILED,
                     http("bad_request"))
    assert status_of(one_read) in (400, 431)
    slow = [post(b"", b"Content-Length: 0")[:-4] + b"\r\n"] + [b"X-Big-%d: %s\r\n" % (i, b"a" * 4000)
                                                                 for i in range(8)]
    several = check(target, lambda: raw(target.proc.http_port, slow, pause=0.05), FAILED, http("bad_request"))
    assert status_of(several) == 400


def test_http_1_0_is_served(target: Target) -> None:
    body = _body("http10")
    resp = check(target, lambda: raw(target.proc.http_port, post(body, b"Content-Length: %d" % len(body),
                                                                 version=b"HTTP/1.0")), "ml_predictions_total", {})
    assert resp.startswith(b"HTTP/1.1 200")


def test_pipelined_requests_are_answered_in_order(target: Target) -> None:
    reqs = []
    for i in range(3):
        body = _body(f"pipelined-{i}")
        reqs.append(post(body, b"Content-Length: %d" % len(body)).replace(b"Connection: close\r\n", b""))
    last = b"GET /health HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"
    resp = check(target, lambda: raw(target.proc.http_port, b"".join(reqs) + last), "ml_predictions_total", {}, 3)
    assert resp.count(b"HTTP/1.1 200 OK") == 4 and resp.endswith(b"ok")


def test_tls_handshake_on_the_plaintext_port_is_400(target: Target) -> None:
    hello = bytes.fromhex("16030100a0010000") + b"\x03\x03" + bytes(range(200))
    resp = check(target, lambda: raw(target.proc.http_port, hello), FAILED, http("bad_request"))
    assert status_of(resp) == 400


@pytest.mark.parametrize(("request_line", "status", "reason"), [
    (b"GET /v1/traces HTTP/1.1", 404, "not_found"), (b"PUT /v1/logs HTTP/1.1", 405, "method_not_allowed")])
def test_wrong_path_or_method(target: Target, request_line: bytes, status: int, reason: str) -> None:
    data = request_line + b"\r\nHost: p\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    resp = check(target, lambda: raw(target.proc.http_port, data), FAILED, http(reason))
    assert status_of(resp) == status


def test_undecodable_protobuf_is_400(target: Target) -> None:
    junk = b"\xff\xfe\xfd garbage"
    resp = check(target, lambda: raw(target.proc.http_port, post(junk, b"Content-Length: %d" % len(junk))),
                 REJECTED, {"ml_reason": "decode_error"})
    assert status_of(resp) == 400


def _array_task_request() -> bytes:
    record = prediction_event("array-task")
    for kv in record.attributes:
        if kv.key == a.ML_TASK:
            kv.value.CopyFrom(common_pb2.AnyValue(array_value=common_pb2.ArrayValue(
                values=[common_pb2.AnyValue(string_value="binary")])))
    seg = record.attributes.add()
    seg.key = "ml.segment.region"
    seg.value.CopyFrom(common_pb2.AnyValue(array_value=common_pb2.ArrayValue(
        values=[common_pb2.AnyValue(string_value="eu")])))
    return ev.request([record, prediction_event("array-task-neighbour")]).SerializeToString()


def test_array_valued_task_or_segment_gets_a_correct_answer_over_http(target: Target) -> None:
    """The outsider's finding: the connection closed with no answer. Now: 200 with the record rejected (decode's
    record-level fix), or at worst a 500 counted as internal_error; never a dropped connection."""
    body = _array_task_request()
    before_internal = target.counter(FAILED, **http("internal_error"))
    resp = raw(target.proc.http_port, post(body, b"Content-Length: %d" % len(body)))
    assert status_of(resp) in (200, 500), resp[:200]
    if status_of(resp) == 500:
        assert target.counter(FAILED, **http("internal_error")) == before_internal + 1
    canary(target)


# --- gRPC ------------------------------------------------------------------------------------------------------------
def _call(target: Target, body: bytes, **kw: Any) -> Any:
    # a channel of its own connection (grpc shares subchannels between channels to the same target by default)
    with grpc.insecure_channel(f"127.0.0.1:{target.proc.grpc_port}",
                               options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)(body, timeout=10, **kw)


def _code(target: Target, body: bytes) -> grpc.StatusCode:
    try:
        _call(target, body)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[attr-defined, no-any-return]


def test_grpc_garbage_is_invalid_argument(target: Target) -> None:
    code = check(target, lambda: _code(target, b"\xff\xfe garbage"), REJECTED, {"ml_reason": "decode_error"})
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_over_the_limit_is_resource_exhausted(target: Target) -> None:
    big = ev.request([prediction_event(f"big-{i}", padding="p" * 1000) for i in range(1200)]).SerializeToString()
    assert LIMIT < len(big) < 4 * LIMIT
    code = check(target, lambda: _code(target, big), REJECTED, {"ml_reason": "too_large"})
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_array_valued_task_is_never_unknown(target: Target) -> None:
    before_internal = target.counter(FAILED, ml_reason="internal_error", ml_receiver="grpc")
    code = _code(target, _array_task_request())
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.INTERNAL)
    if code == grpc.StatusCode.INTERNAL:
        assert target.counter(FAILED, ml_reason="internal_error", ml_receiver="grpc") == before_internal + 1
    canary(target)


def test_grpc_empty_request_is_ok(target: Target) -> None:
    assert _code(target, b"") == grpc.StatusCode.OK
    canary(target)


def test_garbage_on_the_grpc_port_and_cancelled_calls_harm_nothing(target: Target) -> None:
    assert raw(target.proc.grpc_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)) * 8, wait=2) \
        is not None
    before = target.counter("ml_predictions_total")
    with grpc.insecure_channel(f"127.0.0.1:{target.proc.grpc_port}") as channel:
        stub = logs_service_pb2_grpc.LogsServiceStub(channel)
        futures = [stub.Export.future(ev.request([prediction_event(f"cancel-{i}")]), timeout=10) for i in range(8)]
        for f in futures:
            f.cancel()
    # A call cancelled after the server read it may still be committed (as an OTLP sender's retry would be, once):
    # wait until the server has settled them before the canary counts its own commit.
    settled = _settled(target, "ml_predictions_total")
    assert before <= settled <= before + len(futures)
    canary(target)
    assert _code(target, _body("after-cancel")) == grpc.StatusCode.OK


def test_grpc_connection_cap(target: Target) -> None:
    """Beyond ``receiver.grpc.max_connections`` grpc core closes new connections at once (a retryable UNAVAILABLE
    for the sender); once connections go away, calls succeed again."""
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")  # + empty SETTINGS
    held: list[socket.socket] = []

    def served(s: socket.socket) -> bool:
        try:
            return bool(s.recv(9))  # the server's SETTINGS frame: grpc accepted and serves this connection
        except OSError:
            return False

    try:
        # connections of earlier cases may still count: open until grpc closes one
        for _ in range(MAX_CONNECTIONS + 1):
            s = socket.create_connection(("127.0.0.1", target.proc.grpc_port), timeout=10)
            s.sendall(preface)
            held.append(s)
            if not served(s):
                break
        else:
            raise AssertionError(f"{len(held)} connections served, more than max_connections={MAX_CONNECTIONS}")
        assert _code(target, _body("over-the-cap")) == grpc.StatusCode.UNAVAILABLE
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 10
    while _code(target, _body("under-the-cap")) != grpc.StatusCode.OK:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    canary(target)


def test_rss_peak_stayed_bounded(target: Target) -> None:
    assert proc_status(target.pid, "VmHWM:") <= target.rss0 + RSS_SLACK + (16 << 20)
