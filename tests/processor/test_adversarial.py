"""Hostile input against a real ``otel-ml processor`` process, over OTLP/gRPC and OTLP/HTTP.

Every case of issue #11's record half: each bad record is rejected alone with its reason (in ``partial_success`` and
in ``ml.processor.records.rejected``), the good records of the same request are committed (a canary pair joins and
is counted), no answer is UNKNOWN or a dropped connection, error messages stay small, and no request raises the
processor's RSS by more than 4x its size (peak sampled while it is processed; 8 MiB allowed for allocator noise on
small requests). The per-record semantics on both decode paths are in ``test_fastdecode.py`` (fuzzed, also under
ASan); this file checks the process as a whole.
"""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import RejectReason
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev
from tests.support.grpc_sender import EXPORT

pytestmark = pytest.mark.integration
MAX_REQUEST = 16 << 20
RSS_FACTOR = 4
RSS_SLACK = 8 << 20
ONE_GIB = 1 << 30


class Target:
    """The processor under test, its gRPC stub and an RSS sampler."""

    def __init__(self, proc: ProcessorProcess) -> None:
        self.proc = proc
        self.ps = psutil.Process(proc.process.pid)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{proc.grpc_port}", options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
        self.export = self.channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        self.canaries = 0

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def grpc(self, body: bytes) -> tuple[str, ExportLogsServiceResponse | None, int]:
        """(status code name, response, peak RSS increase while the request was processed)."""
        with self.peak_rss() as peak:
            try:
                raw = self.export(body, timeout=120)
            except grpc.RpcError as exc:
                return exc.code().name, None, peak[0]
        return "OK", ExportLogsServiceResponse.FromString(raw), peak[0]

    def http(self, body: bytes, content_type: str = "application/x-protobuf") -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.proc.http_port, timeout=120)
        try:
            conn.request("POST", "/v1/logs", body=body, headers={"Content-Type": content_type})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    class _Peak:
        def __init__(self, target: Target) -> None:
            self.target = target
            self.box = [0]
            self.stop = threading.Event()

        def __enter__(self) -> list[int]:
            base = self.target.rss()

            def sample() -> None:
                while not self.stop.is_set():
                    self.box[0] = max(self.box[0], self.target.rss() - base)
                    time.sleep(0.002)

            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
            return self.box

        def __exit__(self, *exc: Any) -> None:
            time.sleep(0.05)
            self.stop.set()
            self.thread.join()

    def peak_rss(self) -> Target._Peak:
        return Target._Peak(self)

    def value(self, family: str, **labels: str) -> float:
        """Sum of the series of ``family`` whose labels include ``labels``."""
        total = 0.0
        for series, v in self.proc.scrape().items():
            name, _, rest = series.partition("{")
            if name != family:
                continue
            got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
            if all(got.get(k) == w for k, w in labels.items()):
                total += v
        return total

    def canary(self) -> list[Any]:
        """A prediction and its label (a pair), counted as one labeled prediction of model ``canary``."""
        self.canaries += 1
        return [ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "canary", a.ML_PREDICTION_ID: f"c{self.canaries}",
                                                    a.ML_TASK: "binary", a.ML_PREDICTION_VALUE: "1",
                                                    a.ML_LABEL_VALUE: "1"}, 1_700_000_000_000_000_000)]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp: Path = tmp_path_factory.mktemp("adversarial")
    proc = ProcessorProcess(tmp, receiver={"max_request_bytes": MAX_REQUEST, "max_inflight_requests": 4}).start()
    t = Target(proc)
    from tests.support.workload import benchmark_requests
    for body in benchmark_requests(20):  # steady state: caches, store and allocator warmed by normal traffic
        assert t.grpc(body)[0] == "OK"
    try:
        yield t
    finally:
        t.channel.close()
        proc.process.stop()


def _pred(pid: str, model: str = "hostile", **attrs: Any) -> Any:
    return ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: model, a.ML_PREDICTION_ID: pid, a.ML_TASK: "binary",
                                               a.ML_PREDICTION_VALUE: "1", **attrs}, 1_700_000_000_000_000_000)


def _with_value(record: Any, key: str, value: AnyValue) -> Any:
    for kv in record.attributes:
        if kv.key == key:
            kv.value.CopyFrom(value)
            return record
    record.attributes.append(KeyValue(key=key, value=value))
    return record


ARRAY = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="binary")]))

# (case, hostile records, their rejection reason)
CASES: list[tuple[str, list[Any], str]] = [
    ("array ml.task", [_with_value(_pred("t1"), a.ML_TASK, ARRAY)], RejectReason.WRONG_TYPE),
    ("array segment", [_with_value(_pred("s1"), "ml.segment.region", ARRAY)], RejectReason.WRONG_TYPE),
    ("kvlist segment", [_with_value(_pred("s2"), "ml.segment.region", AnyValue(kvlist_value=KeyValueList(
        values=[KeyValue(key="k", value=AnyValue(string_value="v"))])))], RejectReason.WRONG_TYPE),
    ("1 MiB prediction id", [ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "hostile", a.ML_LABEL_VALUE: "1",
                                                            a.ML_PREDICTION_ID: "x" * (1 << 20)})],
     RejectReason.TOO_LONG),
    ("15 MiB prediction id", [_pred("y" * (15 << 20))], RejectReason.TOO_LONG),
    ("6 MB unknown ml.task", [_pred("t2", **{a.ML_TASK: "t" * 6_000_000})], RejectReason.TOO_LONG),
    ("15 MiB kvlist model name", [_with_value(_pred("k1"), a.ML_MODEL_NAME, AnyValue(kvlist_value=KeyValueList(
        values=[KeyValue(key="k", value=AnyValue(string_value="z" * (15 << 20)))])))], RejectReason.WRONG_TYPE),
    ("150 segment values of 100 kB", [_pred(f"g{i}", **{"ml.segment.user": f"{i}-" + "u" * 100_000})
                                      for i in range(150)], RejectReason.TOO_LONG),
    ("5000 classes", [_pred("c1", **{a.ML_PREDICTION_CLASSES: [str(i) for i in range(5000)]})],
     RejectReason.TOO_MANY),
]


@pytest.mark.parametrize("transport", ["grpc", "http"])
@pytest.mark.parametrize(("case", "records", "reason"), CASES, ids=[c[0] for c in CASES])
def test_hostile_records_are_rejected_alone(target: Target, transport: str, case: str, records: list[Any],
                                            reason: str) -> None:
    body = ev.request([*target.canary(), *records, *target.canary()]).SerializeToString()
    assert len(body) <= MAX_REQUEST
    rejected = target.value("ml_processor_records_rejected_total", ml_reason=reason)
    labeled = target.value("ml_labeled_predictions_total", ml_model_name="canary")
    if transport == "grpc":
        status, resp, peak = target.grpc(body)
        assert status == "OK"
        assert resp is not None
    else:
        with target.peak_rss() as box:
            code, raw = target.http(body)
        peak = box[0]
        assert code == 200, raw[:200]
        resp = ExportLogsServiceResponse.FromString(raw)
    assert resp.partial_success.rejected_log_records == len(records)
    message = resp.partial_success.error_message
    assert message.startswith(reason) and len(message.encode()) <= 1024
    assert len(resp.SerializeToString()) < 2048
    assert target.value("ml_processor_records_rejected_total", ml_reason=reason) == rejected + len(records)
    assert target.value("ml_labeled_predictions_total", ml_model_name="canary") == labeled + 2  # committed
    print(f"{case} ({transport}): {len(body) / 2**20:.1f} MiB, RSS +{peak / 2**20:.1f} MiB")
    assert peak <= RSS_FACTOR * len(body) + RSS_SLACK, f"{case}: RSS +{peak / 2**20:.0f} MiB"
    assert target.rss() < ONE_GIB


def test_a_16_mib_request_of_small_labels_stays_within_4x(target: Target) -> None:
    records = [ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "dense", a.ML_PREDICTION_ID: f"{i}",
                                              a.ML_LABEL_VALUE: "1"}, 1_700_000_000_000_000_000)
               for i in range(165_000)]
    body = ev.request(records).SerializeToString()
    assert 15 << 20 < len(body) <= MAX_REQUEST
    before = target.value("ml_labels_total", ml_model_name="dense")
    status, _, peak = target.grpc(body)
    assert status == "OK"
    assert target.value("ml_labels_total", ml_model_name="dense") == before + len(records)
    print(f"16 MiB of labels: RSS +{peak / 2**20:.1f} MiB ({peak / len(body):.2f}x)")
    assert peak <= RSS_FACTOR * len(body)


def _fuzzed_record(rng: random.Random) -> Any:
    keys = [a.ML_MODEL_NAME, a.ML_MODEL_VERSION, a.ML_TASK, a.ML_PREDICTION_ID, a.ML_PREDICTION_VALUE,
            a.ML_PREDICTION_VALUES, a.ML_PREDICTION_SCORE, a.ML_PREDICTION_SCORES, a.ML_PREDICTION_CLASSES,
            a.ML_LABEL_VALUE, a.ML_LABEL_VALUES, a.ML_LABEL_RELEVANCE, "ml.segment.r", "ml.feature.f"]
    kinds = [lambda: AnyValue(string_value=rng.choice(["", "1", "binary", "m", "é" * rng.randint(0, 3000)])),
             lambda: AnyValue(double_value=rng.choice([0.5, float("nan"), float("inf")])),
             lambda: AnyValue(int_value=rng.randint(-5, 5)), lambda: AnyValue(bool_value=True),
             lambda: AnyValue(bytes_value=b"\x00" * rng.randint(0, 64)), lambda: AnyValue(),
             lambda: AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=1)])),
             lambda: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(bool_value=True))]))]
    record = ev.log_record(rng.choice([ML_PREDICTION_EVENT, ML_LABEL_EVENT]), {})
    for key in rng.sample(keys, rng.randint(1, len(keys))):
        record.attributes.append(KeyValue(key=key, value=rng.choice(kinds)()))
    return record


def test_fuzzed_records_never_fail_a_request(target: Target) -> None:
    rng = random.Random(11)
    for _ in range(30):
        body = ev.request([*target.canary(), *(_fuzzed_record(rng) for _ in range(40))]).SerializeToString()
        status, resp, _ = target.grpc(body)
        assert status == "OK" and resp is not None
        code, raw = target.http(body)
        assert code == 200, raw[:200]
    assert target.value("ml_processor_records_rejected_total", ml_reason=RejectReason.INTERNAL_ERROR) == 0


def _http_status(target: Target, body: bytes) -> int | str:
    try:
        return target.http(body)[0]
    except OSError as exc:  # refused by the HTTP layer before any answer (listen backlog): never counted
        return type(exc).__name__


def test_concurrent_malformed_requests_are_counted_one_for_one(target: Target) -> None:
    """600 malformed requests from 32 threads against 4 in-flight slots: every request gets an answer and every
    answer is counted once (the race that lost self-metric bumps while the writer committed is gone): a 400 is one
    ``decode_error``, a 503 (admission full: refused before the body is read, retryable) one ``overloaded``
    refusal. How many get which depends on the machine's load."""
    rejected = ("ml_processor_records_rejected_total", {"ml_reason": RejectReason.DECODE_ERROR})
    refused = ("ml_processor_requests_refused_total", {"ml_receiver": "http"})
    before = [target.value(name, **labels) for name, labels in (rejected, refused)]
    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(lambda i: _http_status(target, b"\xff\xff garbage %d" % i), range(600)))
    print(f"600 concurrent malformed requests: {sorted((c, codes.count(c)) for c in set(codes))}")
    assert set(codes) <= {400, 503} and codes.count(400) > 0
    assert target.value(rejected[0], **rejected[1]) == before[0] + codes.count(400)
    assert target.value(refused[0], **refused[1]) == before[1] + codes.count(503)


def test_concurrent_refusals_are_counted_one_for_one(target: Target) -> None:
    """Many concurrent requests against 4 admission slots: every UNAVAILABLE answer is one refusal counted."""
    from tests.support.workload import benchmark_requests

    bodies = benchmark_requests(8)
    before = target.value("ml_processor_requests_refused_total")
    with ThreadPoolExecutor(48) as pool:
        codes = list(pool.map(lambda i: target.grpc(bodies[i % len(bodies)])[0], range(400)))
    refused = codes.count("UNAVAILABLE")
    print(f"400 concurrent requests, 4 slots: {sorted((c, codes.count(c)) for c in set(codes))}")
    assert refused > 0 and set(codes) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}
    assert target.value("ml_processor_requests_refused_total") == before + refused


def test_many_classes_times_segments_are_exported_without_sdk_overflow(target: Target) -> None:
    records = [_pred(f"cs{c}-{s}", model="wide", **{a.ML_TASK: "multiclass", a.ML_PREDICTION_VALUE: f"class{c}",
                                                     a.ML_LABEL_VALUE: f"class{(c + 1) % 12}",
                                                     "ml.segment.shop": f"shop{s}"})
               for c in range(12) for s in range(60)]
    assert target.grpc(ev.request(records).SerializeToString())[0] == "OK"
    scraped = target.proc.scrape()
    outcomes = [k for k in scraped if k.startswith("ml_classification_outcomes_total{") and 'ml_model_name="wide"' in k]
    assert len(outcomes) == 12 * 60 * 2  # fp and fn of every class and shop (every prediction wrong): > 2000
    assert not any("otel_metric_overflow" in k for k in scraped)
    assert target.value("ml_processor_series_overflow") == 0
