"""The memory limiter's accounting (with a fake RSS) and its expansion factor (measured on real decodes)."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest

from otel_ml.processor import config as cfg
from otel_ml.processor import memory
from otel_ml.processor.decode import decode_body
from otel_ml.processor.memory import EXPANSION, MIN_RESERVATION, MemoryLimiter
from otel_ml.processor.step import Processor
from otel_ml.processor.store import open_store
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Receiver, RefuseReason
from tests.support.procs import proc_status
from tests.support.workload import benchmark_requests

MIB = 2**20


class FakeRss:
    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self) -> int:
        return self.value


def test_reservations_refuse_before_the_soft_limit_and_release() -> None:
    rss = FakeRss(100 * MIB)
    lim = MemoryLimiter(soft=200 * MIB, hard=250 * MIB, rss=rss)
    first = lim.reserve(5 * MIB)  # 40 MiB reserved
    assert first is not None and lim.reserved == EXPANSION * 5 * MIB
    second = lim.reserve(7 * MIB)  # 100 + 40 + 56 = 196 <= 200
    assert second is not None
    assert lim.reserve(1 * MIB) is None  # 196 + 8 > 200
    assert lim.would_admit()  # a request of unknown size reserves 64 KiB first: it still fits
    second.release()
    second.release()  # idempotent
    assert lim.reserved == EXPANSION * 5 * MIB and lim.would_admit()
    assert first.grow(1 * MIB) and first.grow(10 * MIB)  # alone in flight: may grow past soft up to hard (228)
    assert not first.grow(3 * MIB)  # 228 + 24 > 250
    first.release()
    assert lim.reserved == 0 and lim.active == 0
    rss.value = 220 * MIB  # above soft, nothing in flight: one request at a time may still use the room up to hard
    alone = lim.reserve(0)
    assert alone is not None and lim.reserve(0) is None
    alone.release()
    rss.value = 250 * MIB - MIN_RESERVATION + 1  # at the hard limit: nothing fits
    assert lim.reserve(0) is None
    rss.value = 100 * MIB
    unknown = lim.reserve(0)
    assert unknown is not None and unknown.bytes == MIN_RESERVATION


def test_only_the_oldest_request_grows_beyond_soft() -> None:
    lim = MemoryLimiter(soft=200 * MIB, hard=300 * MIB, rss=FakeRss(150 * MIB))
    a = lim.reserve(0)
    assert a is not None and a.grow(10 * MIB)  # 150 + 80 > soft, but the oldest (here alone): up to hard
    assert lim.reserve(0) is None  # nothing new above the soft limit
    a.release()
    a2, b2 = lim.reserve(0), lim.reserve(0)
    assert a2 is not None and b2 is not None
    assert not b2.grow(10 * MIB)  # a younger request stays below soft: it is refused, releases, its sender retries
    assert a2.grow(10 * MIB)  # the oldest always progresses (requests growing as their bodies arrive cannot all
    a2.release()  # block each other)
    assert b2.grow(5 * MIB)  # now b2 is the oldest
    assert not a2.grow(1)  # released: a reservation cannot grow again


def test_check_sheds_above_hard_or_when_idle_above_soft() -> None:
    rss = FakeRss(100 * MIB)
    lim = MemoryLimiter(soft=200 * MIB, hard=250 * MIB, rss=rss)
    calls: list[str] = []

    def failing() -> None:
        calls.append("failing")
        raise RuntimeError("a broken shedder must not stop the others")

    lim.register_shedder(failing)
    memory.register_shedder(lambda: calls.append("global"))
    try:
        lim.check()
        assert calls == [] and lim.sheds == 0
        rss.value = 210 * MIB  # above soft, idle: shed (else every request would be refused forever)
        lim.check()
        assert calls == ["failing", "global"] and lim.sheds == 1
        busy = MemoryLimiter(soft=200 * MIB, hard=250 * MIB, rss=FakeRss(210 * MIB))
        busy.reserved, busy._active[0] = 1, None  # above soft with a request in flight: wait for it, no shedding
        busy.check()
        assert busy.sheds == 0
        busy.last_rss = 0
        busy._rss = FakeRss(260 * MIB)  # above hard: shed whatever is in flight
        busy.check()
        assert busy.sheds == 1
    finally:
        memory._SHEDDERS.clear()


def test_limits_of_the_config() -> None:
    total = 4 * 1024 * MIB
    pct = cfg.from_mapping({}).memory_limiter
    assert pct is not None and pct.limits(total) == (int(total * 0.6), int(total * 0.8))
    mib = cfg.from_mapping({"memory_limiter": {"limit_mib": 1000}}).memory_limiter
    assert mib is not None and mib.limits(total) == (800 * MIB, 1000 * MIB)
    assert memory.total_memory() > 0 and memory.read_rss() > 0


@pytest.mark.parametrize("extras", [False, True])
def test_expansion_covers_a_real_decode_and_commit(tmp_path: Path, extras: bool) -> None:
    """EXPANSION bounds what a request holds at its peak (C decoder here; the Python path's 7.0x is measured in
    benchmarks/README.md): peak RSS over the body, for an 8 MiB request."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    req = ExportLogsServiceRequest()
    for b in benchmark_requests(25):
        req.MergeFromString(b)
    body = req.SerializeToString()
    del req
    conf = cfg.from_mapping({"store": {"path": str(tmp_path / "s.db")}, "metrics": {"otlp": None}})
    step = Processor(conf, open_store(conf.store, "x"), [], lambda: 1.7e9)
    step.process([decode_body(benchmark_requests(1)[0], 1.7e9, extras)])  # caches and statements warm
    gc.collect()
    if not os.path.exists("/proc/self/clear_refs"):
        pytest.skip("needs Linux /proc to read the peak RSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM
    base = proc_status("self", "VmRSS:")
    step.process([decode_body(body, 1.7e9, extras)])
    peak = proc_status("self", "VmHWM:") - base
    step.close()
    assert peak + len(body) <= EXPANSION * len(body), peak / len(body)


def test_resize_and_deferred_release() -> None:
    lim = MemoryLimiter(soft=200 * MIB, hard=250 * MIB, rss=FakeRss(100 * MIB))
    read = lim.reserve_bytes(48 * MIB)  # e.g. a gRPC message being read: no expansion
    assert read is not None and lim.reserved == 48 * MIB
    other = lim.reserve(5 * MIB)  # 100 + 48 + 40 = 188
    assert other is not None
    assert not read.resize(20 * MIB)  # 160 MiB: 188 + 112 > hard even for the oldest; unchanged
    assert read.bytes == 48 * MIB and lim.reserved == 88 * MIB
    assert read.resize(1 * MIB)  # shrinks to the body's share
    assert read.bytes == EXPANSION * MIB and lim.reserved == 48 * MIB and lim.active == 2
    read.release_later()  # what a finalizer does: no lock taken now, applied before the next decision
    assert lim.reserved == 48 * MIB
    assert lim.would_admit() and lim.reserved == 40 * MIB and lim.active == 1
    other.release_later()
    lim.check()
    assert lim.reserved == 0 and lim.active == 0
    assert not read.resize(1)  # released: cannot come back


def test_grpc_reserves_for_the_message_before_grpc_reads_it() -> None:
    """grpc reads a whole message (about GRPC_READ_EXPANSION times its size) before ``Export`` runs: the handler
    lookup reserves that for a message of max_request_bytes, Export resizes it to the body's share, and a call
    cancelled before its message arrived gives it back."""
    import queue
    import time

    import grpc

    from otel_ml.processor.grpc_receiver import GRPC_READ_EXPANSION
    from otel_ml.processor.server import ProcessorApp
    from tests.processor.conftest import prediction_event
    from tests.support import otlp_events as ev

    limit = 4 * MIB
    app = ProcessorApp(cfg.from_mapping({
        "receiver": {"grpc": {"endpoint": "127.0.0.1:0"}, "http": None, "max_request_bytes": limit},
        "metrics": {"otlp": None}, "store": {"backend": "memory"},
        "memory_limiter": {"limit_mib": 1000, "spike_limit_mib": 200}}), stages=[]).start()
    lim = app.limiter
    assert lim is not None
    rss = FakeRss(100 * MIB)
    lim._rss = rss
    method = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

    def wait_until(cond: Any) -> None:
        deadline = time.monotonic() + 10
        while not cond():
            assert time.monotonic() < deadline
            time.sleep(0.01)
            lim.would_admit()  # applies releases deferred by finalizers

    try:
        with grpc.insecure_channel(f"127.0.0.1:{app.grpc_port}") as channel:
            # a call whose message has not arrived: its read is reserved already
            pending: queue.Queue[bytes | None] = queue.Queue()
            stream = channel.stream_unary(method, request_serializer=None, response_deserializer=None)
            call = stream.future(iter(pending.get, None), timeout=30)
            wait_until(lambda: lim.reserved == GRPC_READ_EXPANSION * limit and lim.active == 1)
            call.cancel()
            pending.put(None)
            wait_until(lambda: lim.reserved == 0 and lim.active == 0)
            # an answered call gives everything back
            body = ev.request([prediction_event("r1")]).SerializeToString()
            channel.unary_unary(method, request_serializer=None, response_deserializer=None)(body, timeout=30)
            wait_until(lambda: lim.reserved == 0 and lim.active == 0)
            # room for an unknown-size HTTP request but not for reading a gRPC message: refused before the read
            rss.value = lim.hard - GRPC_READ_EXPANSION * limit + 1
            assert lim.would_admit()
            with pytest.raises(grpc.RpcError) as err:
                channel.unary_unary(method, request_serializer=None, response_deserializer=None)(body, timeout=30)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert lim.reserved == 0 and lim.active == 0
        assert app.pipeline.aggregates.value(m.PROCESSOR_REQUESTS_REFUSED.name, {
            a.ML_REASON: RefuseReason.MEMORY_LIMIT, a.ML_RECEIVER: Receiver.GRPC}) == 1
    finally:
        app.stop(grace=0.5)
