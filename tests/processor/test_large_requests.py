"""Large requests are validated whole, then decoded and ingested in parts: same result, bounded memory."""

from __future__ import annotations

import functools
import random
import time
import tracemalloc
from pathlib import Path

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs, ScopeLogs

from otel_ml.processor import _native
from otel_ml.processor import config as cfg
from otel_ml.processor.decode import PART_BYTES, PART_RECORDS, decode_body
from otel_ml.processor.decode import framing as decode
from otel_ml.processor.step import Processor
from otel_ml.processor.store import SqliteJoinStore
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.events import ML_LABEL_EVENT
from tests.processor.test_fastdecode import NOW, ODD_RECORDS, common_records, summary
from tests.support import otlp_events as ev

SMALL_PARTS = 700
"""Records per part in these tests (parts of the production size need requests too slow to build here)."""


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "PART_BYTES", 64 << 10)
    monkeypatch.setattr(decode, "PART_RECORDS", SMALL_PARTS)


@functools.cache
def _large_request(seed: int) -> bytes:
    """Several resources and scopes, every kind of record (C rows, fallbacks, rejections, ignored)."""
    rng = random.Random(seed)
    request = ev.request([])
    request.resource_logs.pop()
    for _ in range(3):
        rl = ResourceLogs()
        for _s in range(2):
            recs = common_records(rng, 300) + ODD_RECORDS + [
                ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "x" * 5000,
                                               a.ML_LABEL_VALUE: "1"})]
            rl.scope_logs.append(ScopeLogs(log_records=recs))
        request.resource_logs.append(rl)
    body = request.SerializeToString()
    assert len(body) > decode.PART_BYTES and sum(len(s.log_records) for r in request.resource_logs
                                                 for s in r.scope_logs) > 2 * SMALL_PARTS
    return body


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_parts_decode_to_the_same_result(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if native and _native.decoder is None:
        pytest.skip(_native.status)
    body = _large_request(4)
    whole = summary(decode_body(body, NOW, True, parts=False))
    if not native:
        monkeypatch.setattr(_native, "decoder", None)
    lazy = decode_body(body, NOW, True)
    assert lazy.parts is not None and not lazy.predictions
    parts = list(lazy.parts())
    assert len(parts) > 2 and all(p.received <= SMALL_PARTS for p in parts)
    assert sum(p.received for p in parts) == lazy.received
    assert summary(lazy.materialized()) == whole


def test_a_malformed_large_request_is_refused_before_anything_is_decoded() -> None:
    body = bytearray(_large_request(5))
    body[-3:] = b"\xff\xff\xff"
    with pytest.raises(DecodeError):
        decode_body(bytes(body), NOW, True)


def _labels(n: int, start: int) -> bytes:
    return ev.request([ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: f"{start + i}",
                                                      a.ML_LABEL_VALUE: "1"}, 1_700_000_000_000_000_000)
                       for i in range(n)]).SerializeToString()


def _processor(path: Path) -> Processor:
    config = cfg.from_mapping({"metrics": {"otlp": None}})
    return Processor(config, SqliteJoinStore(path, config.store.label_window, config.store.max_pending), (),
                     time.time)


def test_parts_are_counted_like_the_whole_request(tmp_path: Path) -> None:
    body = _large_request(6)
    results, totals = [], []
    for name, parts in (("whole", False), ("parts", True)):
        p = _processor(tmp_path / f"{name}.db")
        results.append(p.process([decode_body(body, NOW, False, parts=parts)]))
        totals.append(p.aggregates.all_totals())
        p.close()
    assert results[0] == results[1]
    assert totals[0].keys() == totals[1].keys()
    assert totals[1] == pytest.approx(totals[0], rel=1e-12)  # sums in another order


@pytest.mark.skipif(_native.decoder is None, reason=_native.status)
def test_memory_of_a_large_request_of_small_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """50 000 labels (4 MiB) in one request: decoded and ingested at once they take ~5x the request in Python
    objects; in parts (of the production size), a fraction of it (traced allocations; the request's own bytes are
    not counted)."""
    monkeypatch.setattr(decode, "PART_BYTES", PART_BYTES)
    monkeypatch.setattr(decode, "PART_RECORDS", PART_RECORDS)
    p = _processor(tmp_path / "s.db")
    peaks: dict[str, float] = {}
    for k, parts in enumerate((True, False)):
        body = _labels(50_000, k * 1_000_000)
        assert len(body) > 3 * PART_BYTES
        tracemalloc.start()
        try:
            p.process([decode_body(body, NOW, False, parts=parts)])
            peaks["parts" if parts else "whole"] = tracemalloc.get_traced_memory()[1] / len(body)
        finally:
            tracemalloc.stop()
    print({k: round(v, 2) for k, v in peaks.items()})
    assert peaks["parts"] < 1.0 < 4.0 < peaks["whole"]
    assert p.aggregates.value(m.LABELS.name) == 100_000
    p.close()
