"""Soak: mixed good and hostile traffic against a real ``otel-ml processor`` for a bounded time.

Four senders (gRPC and HTTP, retrying refusals as the collector does) interleave, for :data:`SOAK_SECONDS`:
requests of good predictions and late labels of three models with hostile records mixed in (array-typed task,
too long id, unknown task, NaN score, too many segments, missing id, oversized segment value), junk model names,
unreadable requests, and large requests of small labels. At the end the good counters equal the scikit-learn truth
of the good records exactly, every rejection counter equals what was sent, and the processor's RSS never rose by
more than 4x the largest request per request in flight (plus the store's bounded page cache) and stayed under 1 GiB.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue
from sklearn.metrics import accuracy_score, multilabel_confusion_matrix

from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import RejectReason
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT
from tests.processor.procs_helpers import ProcessorProcess
from tests.support import otlp_events as ev
from tests.support.grpc_sender import EXPORT

pytestmark = pytest.mark.integration
SOAK_SECONDS = 30.0
MODELS = {"router": ["billing", "shipping", "tech", "account"], "triage": ["low", "high"],
          "intent": [f"i{k}" for k in range(8)]}
T0 = 1_700_000_000_000_000_000
SQLITE_CACHE = 64 << 20
"""The store's page cache (``PRAGMA cache_size``), filled by the soak's pending rows: bounded, allowed on top."""


def _hostile(rng: random.Random, i: int) -> tuple[Any, str]:
    """One hostile record and the reason it must be rejected for."""
    base: dict[str, Any] = {a.ML_MODEL_NAME: "router", a.ML_PREDICTION_ID: f"h{i}", a.ML_TASK: "multiclass",
                            a.ML_PREDICTION_VALUE: "tech"}
    kind = rng.randrange(7)
    if kind == 0:
        rec = ev.log_record(ML_PREDICTION_EVENT, base)
        for kv in rec.attributes:
            if kv.key == a.ML_TASK:
                kv.value.CopyFrom(AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="multiclass")])))
        return rec, RejectReason.WRONG_TYPE
    if kind == 1:
        return ev.log_record(ML_PREDICTION_EVENT, {**base, a.ML_PREDICTION_ID: "x" * 5000}), RejectReason.TOO_LONG
    if kind == 2:
        return ev.log_record(ML_PREDICTION_EVENT, {**base, a.ML_TASK: "clustering"}), RejectReason.UNKNOWN_TASK
    if kind == 3:
        return ev.log_record(ML_PREDICTION_EVENT, {**base, a.ML_PREDICTION_SCORE: float("nan")}), \
            RejectReason.NOT_FINITE
    if kind == 4:
        segs = {f"ml.segment.d{k}": "v" for k in range(17)}
        return ev.log_record(ML_PREDICTION_EVENT, {**base, **segs}), RejectReason.TOO_MANY
    if kind == 5:
        rec = ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "router", a.ML_LABEL_VALUE: "tech"})
        return rec, RejectReason.MISSING_ATTRIBUTE
    return ev.log_record(ML_PREDICTION_EVENT, {**base, "ml.segment.region": "r" * 1000}), RejectReason.TOO_LONG


class Traffic:
    """Pre-built requests and the truth of their good records."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.truth: dict[str, dict[str, tuple[str, str | None]]] = {m: {} for m in MODELS}
        """model -> prediction id -> (predicted class, true class or None when never labeled)."""
        self.rejected: Counter[str] = Counter()
        self.pending_labels: list[Any] = []
        self.n = 0

    def good_request(self) -> tuple[bytes, Counter[str]]:
        recs: list[Any] = []
        reasons: Counter[str] = Counter()
        for _ in range(150):
            self.n += 1
            model = self.rng.choice(list(MODELS))
            classes = MODELS[model]
            true = self.rng.choice(classes)
            pred = true if self.rng.random() < 0.7 else self.rng.choice(classes)
            pid = f"p{self.n}"
            labeled = self.rng.random() < 0.9
            attrs = {a.ML_MODEL_NAME: model, a.ML_PREDICTION_ID: pid, a.ML_TASK: "multiclass",
                     a.ML_PREDICTION_VALUE: pred, a.ML_MODEL_VERSION: "v1",
                     "ml.segment.region": self.rng.choice(["eu", "us", "apac"])}
            if labeled and self.rng.random() < 0.2:  # a pair
                attrs[a.ML_LABEL_VALUE] = true
            else:
                if labeled:
                    self.pending_labels.append(ev.log_record(ML_LABEL_EVENT, {
                        a.ML_MODEL_NAME: model, a.ML_PREDICTION_ID: pid, a.ML_LABEL_VALUE: true}, T0 + 60 * 10**9))
            recs.append(ev.log_record(ML_PREDICTION_EVENT, attrs, T0))
            self.truth[model][pid] = (pred, true if labeled else None)
        take = min(len(self.pending_labels), self.rng.randint(50, 150))
        recs += self.pending_labels[:take]
        del self.pending_labels[:take]
        for _ in range(self.rng.randint(0, 6)):
            rec, reason = _hostile(self.rng, self.n)
            recs.insert(self.rng.randrange(len(recs)), rec)
            reasons[reason] += 1
        for k in range(self.rng.randint(0, 3)):  # junk model names: accepted, folded, never near the good models
            recs.append(ev.log_record(ML_PREDICTION_EVENT, {
                a.ML_MODEL_NAME: f"junk-{self.n}-{k}", a.ML_PREDICTION_ID: "j", a.ML_TASK: "binary",
                a.ML_PREDICTION_VALUE: "1"}))
        return ev.request(recs).SerializeToString(), reasons

    def dense_labels(self, n: int) -> bytes:
        """A large request of labels of unknown predictions (orphans-to-be: pending, never joined)."""
        self.n += 1
        return ev.request([ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "router", a.ML_LABEL_VALUE: "tech",
                                                          a.ML_PREDICTION_ID: f"o{self.n}-{i}"}, T0)
                           for i in range(n)]).SerializeToString()


class Sender:
    def __init__(self, proc: ProcessorProcess) -> None:
        self.proc = proc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{proc.grpc_port}", options=[
            ("grpc.max_send_message_length", 64 << 20)])
        self.export = self.channel.unary_unary(EXPORT, request_serializer=None, response_deserializer=None)
        self.refusals = 0

    def grpc(self, body: bytes) -> str:
        while True:
            try:
                self.export(body, timeout=120)
                return "OK"
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
                    self.refusals += 1  # overload: retried, as the collector's exporter does
                    time.sleep(0.05)
                    continue
                return exc.code().name

    def http(self, body: bytes) -> int:
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.proc.http_port, timeout=120)
            try:
                conn.request("POST", "/v1/logs", body=body, headers={"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                if resp.status in (429, 503):
                    self.refusals += 1
                    time.sleep(0.05)
                    continue
                return resp.status
            except OSError:  # refused before an answer (listen backlog): nothing was processed, retry
                time.sleep(0.05)
            finally:
                conn.close()


def test_soak_mixed_traffic_keeps_good_counters_exact(tmp_path: Path) -> None:
    proc = ProcessorProcess(tmp_path, receiver={"max_inflight_requests": 4},
                            store={"label_window": "1d"}).start()
    ps = psutil.Process(proc.process.pid)
    senders = [Sender(proc) for _ in range(4)]
    traffic = Traffic(23)
    lock = threading.Lock()
    decode_errors = [0]
    largest = [0]
    errors: list[BaseException] = []
    dense = [traffic.dense_labels(60_000) for _ in range(3)]  # ~5.5 MiB each, sent once each
    try:
        # warm-up: every good model and class is admitted first (junk arrives later and cannot displace them)
        body, reasons = traffic.good_request()
        assert senders[0].grpc(body) == "OK"
        traffic.rejected.update(reasons)
        baseline = ps.memory_info().rss
        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], ps.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        deadline = time.monotonic() + SOAK_SECONDS

        def run(sender: Sender, k: int) -> None:
            try:
                loop(sender, k)
            except BaseException as exc:  # surfaced by the test below
                errors.append(exc)
                raise

        def loop(sender: Sender, k: int) -> None:
            rng = random.Random(k)
            while time.monotonic() < deadline:
                roll = rng.random()
                if roll < 0.03:  # unreadable request
                    code = sender.grpc(b"\xff\xff junk") if rng.random() < 0.5 else sender.http(b"\x0a\xff")
                    assert code in ("INVALID_ARGUMENT", 400), code
                    with lock:
                        decode_errors[0] += 1
                    continue
                with lock:
                    if roll < 0.05 and dense:
                        body, reasons = dense.pop(), Counter()
                    else:
                        body, reasons = traffic.good_request()
                    largest[0] = max(largest[0], len(body))
                status = sender.grpc(body) if rng.random() < 0.5 else sender.http(body)
                assert status in ("OK", 200), status
                with lock:
                    traffic.rejected.update(reasons)

        threads = [threading.Thread(target=run, args=(s, k)) for k, s in enumerate(senders)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert not dense  # every large request was sent
        rest = ev.request(traffic.pending_labels).SerializeToString()  # the last late labels
        assert senders[0].grpc(rest) == "OK"
        stop.set()
        sampler.join()

        scraped = proc.scrape()

        def value(family: str, **labels: str) -> float:
            want = [f'{k}="{v}"' for k, v in labels.items()]
            return sum(v for s, v in scraped.items() if s.split("{")[0] == family and all(w in s for w in want))

        n_good = sum(len(t) for t in traffic.truth.values())
        print(f"soak: {n_good} good predictions, {sum(traffic.rejected.values())} hostile records "
              f"{dict(traffic.rejected)}, {decode_errors[0]} unreadable requests, largest request "
              f"{largest[0] / 2**20:.1f} MiB, refusals retried {sum(s.refusals for s in senders)}, RSS "
              f"{baseline / 2**20:.0f} -> peak {peak[0] / 2**20:.0f} MiB")
        assert n_good > 5_000
        for model, classes in MODELS.items():
            truth = traffic.truth[model]
            joined = [(p, t) for p, t in truth.values() if t is not None]
            y_pred, y_true = [p for p, _ in joined], [t for _, t in joined]
            labels = dict(ml_model_name=model, ml_model_version="v1")
            assert value("ml_predictions_total", **labels) == len(truth)
            assert value("ml_labeled_predictions_total", **labels) == len(joined)
            assert value("ml_correct_predictions_total", **labels) == accuracy_score(y_true, y_pred, normalize=False)
            mcm = multilabel_confusion_matrix(y_true, y_pred, labels=classes)
            for cls, matrix in zip(classes, mcm, strict=True):
                tp, fp, fn = int(matrix[1, 1]), int(matrix[0, 1]), int(matrix[1, 0])
                for outcome, expected in (("tp", tp), ("fp", fp), ("fn", fn)):
                    got = value("ml_classification_outcomes_total", **labels, ml_class=cls, ml_outcome=outcome)
                    assert got == expected, (model, cls, outcome)
            assert np.isclose(value("ml_labeled_predictions_total", **labels), len(joined))
        for reason, n in traffic.rejected.items():
            extra = decode_errors[0] if reason == RejectReason.DECODE_ERROR else 0
            assert value("ml_processor_records_rejected_total", ml_reason=reason) == n + extra, reason
        assert value("ml_processor_records_rejected_total", ml_reason=RejectReason.DECODE_ERROR) == decode_errors[0]
        assert value("ml_processor_records_rejected_total", ml_reason=RejectReason.INTERNAL_ERROR) == 0
        # each request in flight may take 4x its size (receiver.max_inflight_requests: 4), plus the page cache
        assert peak[0] - baseline <= 4 * 4 * largest[0] + SQLITE_CACHE
        assert peak[0] < 1 << 30
    finally:
        for s in senders:
            s.channel.close()
        proc.process.stop()

