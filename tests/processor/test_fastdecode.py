"""The C fast-path decoder against the Python path: same rows, same counts, same rejections, same verdict on bytes.

The invariant: whenever the C code accepts a request (does not hand it back to the Python path), upb accepts it too
and both give the same :class:`Decoded`. Checked on generated requests of every shape, on fuzzed attribute values,
and on byte-level mutations of real requests.
"""

from __future__ import annotations

import math
import random
import struct
import tracemalloc
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_ml.processor import _native
from otel_ml.processor.config import LimitsConfig
from otel_ml.processor.decode import DEFAULT_LIMITS, Decoded, _c_limits, decode_body, decode_request
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import FeatureDropReason, Task
from otel_ml.semconv.events import ML_LABEL_EVENT, ML_PREDICTION_EVENT
from tests.support import otlp_events as ev

NOW = 1_700_000_000.5
fast = pytest.mark.skipif(_native.decoder is None, reason=_native.status)


def canon(x: Any) -> Any:
    """Comparable form: floats by their bits (NaN == NaN, -0.0 != 0.0), containers recursively, types kept."""
    if isinstance(x, float):
        return ("f", struct.pack("<d", x))
    if isinstance(x, tuple):
        return ("t", *map(canon, x))
    if isinstance(x, list):
        return ("l", *map(canon, x))
    if isinstance(x, dict):
        return ("d", *[(k, canon(v)) for k, v in x.items()])
    return (type(x).__name__, x)


def summary(d: Decoded) -> Any:
    return canon((d.received, d.ignored, dict(sorted(d.rejected.items())), d.first_error, d.predictions, d.extras,
                  d.labels, dict(sorted(d.dropped.items()))))


def python_path(body: bytes, extras: bool, limits: LimitsConfig = DEFAULT_LIMITS) -> Any:
    try:
        return summary(decode_request(ExportLogsServiceRequest.FromString(body), NOW, extras, limits))
    except DecodeError:
        return "DecodeError"


def c_path(body: bytes, extras: bool, limits: LimitsConfig = DEFAULT_LIMITS) -> tuple[Any, int]:
    """(summary or None when the C code handed the request back, records it handed to the Python fallback)."""
    assert _native.decoder is not None
    out = Decoded()
    fallbacks = [0]

    def fallback(record: memoryview) -> None:
        from otel_ml.processor.decode import _record

        fallbacks[0] += 1
        rec = LogRecord.FromString(record)
        _record(rec, rec.event_name, out, NOW, extras, limits)

    counts = _native.decoder.decode(body, NOW, extras, out.predictions, out.extras, out.labels, fallback,
                                    out.reject_limit, _c_limits(limits))
    if counts is None:
        return None, fallbacks[0]
    out.received, out.ignored, too_long, too_many, _ = counts
    out.dropped.update({k: v for k, v in ((FeatureDropReason.TOO_LONG, too_long),
                                          (FeatureDropReason.TOO_MANY, too_many)) if v})
    return summary(out), fallbacks[0]


def check(body: bytes, extras: bool, limits: LimitsConfig = DEFAULT_LIMITS) -> tuple[bool, int]:
    """Asserts the invariant; returns (whether C accepted the request, its fallback count)."""
    expected = python_path(body, extras, limits)
    got, fallbacks = c_path(body, extras, limits)
    assert _native.decoder is not None
    dry = _native.decoder.decode(body, NOW, extras, [], [], [], None, None, _c_limits(limits), dry=True)
    assert (dry is None) == (got is None), "the validation pass and the decode disagree"  # parts rely on it
    if got is not None:
        assert expected != "DecodeError", "the C decoder accepted a request upb refuses"
        assert got == expected
    try:
        via_api = summary(decode_body(body, NOW, extras, limits))
    except DecodeError:
        via_api = "DecodeError"
    assert via_api == expected
    return got is not None, fallbacks


# ---- requests of the common shapes: decoded by C alone -------------------------------------------------------------
def common_records(rng: random.Random, n: int) -> list[LogRecord]:
    recs = []
    for i in range(n):
        kind = rng.choice(["binary", "multiclass", "regression", "label", "pair", "regression-pair", "label-num-time"])
        attrs: dict[str, Any] = {a.ML_MODEL_NAME: rng.choice(["fraud", "churn", "é-model"]),
                                 a.ML_PREDICTION_ID: f"id-{i}-{rng.random()}"}
        t = rng.choice([0, 1_700_000_000_123_456_789, 1])
        if kind in ("label", "label-num-time"):
            attrs[a.ML_LABEL_VALUE] = rng.choice(["0", "1", "", "ünï", 2.5, -0.0, 1e300])
            rec = ev.log_record(ML_LABEL_EVENT, attrs, t)
            if kind == "label-num-time":
                rec.observed_time_unix_nano = 1_600_000_000_000_000_001
            recs.append(rec)
            continue
        task = {"pair": "binary", "regression-pair": "regression"}.get(kind, kind)
        attrs[a.ML_TASK] = task
        if rng.random() < 0.8:
            attrs[a.ML_MODEL_VERSION] = rng.choice(["v1", "", "2024-06-01"])
        classes = ["neg", "pos"] if task == "binary" else ["a", "b", "c"]
        attrs[a.ML_PREDICTION_VALUE] = rng.uniform(-5, 5) if task == "regression" else rng.choice([*classes, ""])
        if rng.random() < 0.7:
            attrs[a.ML_PREDICTION_SCORE] = rng.choice([rng.random(), 0.0, -0.0, 1e-300])
        if task != "regression" and rng.random() < 0.7:
            attrs[a.ML_PREDICTION_CLASSES] = classes
            if rng.random() < 0.7:
                attrs[a.ML_PREDICTION_SCORES] = [rng.random() for _ in classes]
        for dim in rng.sample(["region", "channel", "tier"], rng.randint(0, 3)):
            attrs[f"{a.ML_SEGMENT_PREFIX}{dim}"] = rng.choice(["eu", "us", ""])
        for f in range(rng.randint(0, 6)):
            attrs[f"{a.ML_FEATURE_PREFIX}f{f}"] = rng.choice(
                [rng.random(), rng.randint(-(2**63), 2**63 - 1), True, False, "cat", "", [1.0, 2.0], {"k": 1},
                 b"raw", math.nan, -math.inf])
        if kind == "pair":
            attrs[a.ML_LABEL_VALUE] = rng.choice(classes)
        elif kind == "regression-pair":
            attrs[a.ML_LABEL_VALUE] = rng.uniform(-5, 5)
        attrs["app.other"] = rng.choice(["x", 3, 1.5])
        rec = ev.log_record(ML_PREDICTION_EVENT, attrs, t)
        if rng.random() < 0.2:
            rec.trace_id, rec.span_id = rng.randbytes(16), rng.randbytes(8)
        recs.append(rec)
    recs.append(ev.log_record("app.log", {"x": 1}))
    recs.append(LogRecord())
    return recs


@fast
@pytest.mark.parametrize("extras", [False, True])
def test_common_shapes_are_decoded_by_c_alone_and_equal(extras: bool) -> None:
    rng = random.Random(7)
    for _ in range(20):
        body = ev.request(common_records(rng, 60)).SerializeToString()
        accepted, fallbacks = check(body, extras)
        assert accepted and fallbacks == 0


@fast
def test_benchmark_workload_has_no_fallback() -> None:
    from tests.support.workload import benchmark_requests

    for body in benchmark_requests(3):
        for extras in (False, True):
            assert check(body, extras) == (True, 0)


# ---- everything else: odd records go to the Python fallback, same result ------------------------------------------
ODD_RECORDS: list[LogRecord] = [
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "1", a.ML_TASK: Task.MULTILABEL,
                                        a.ML_PREDICTION_VALUES: ["a", "b"], a.ML_LABEL_VALUES: ["a"]}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "2", a.ML_TASK: Task.RANKING,
                                        a.ML_PREDICTION_VALUES: ["x", "y"]}),
    ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "2", a.ML_LABEL_VALUES: ["y"],
                                   a.ML_LABEL_RELEVANCE: [2.0]}),
    ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "3", a.ML_LABEL_VALUE: math.inf}),
    ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "3", a.ML_LABEL_VALUE: 7}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "4", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: 1, a.ML_PREDICTION_SCORE: 1}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "5", a.ML_TASK: Task.REGRESSION,
                                        a.ML_PREDICTION_VALUE: 3}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "6", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1", a.ML_PREDICTION_CLASSES: []}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "7", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1", a.ML_PREDICTION_CLASSES: ["", "1"]}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "8", a.ML_TASK: Task.MULTICLASS,
                                        a.ML_PREDICTION_VALUE: "1", a.ML_PREDICTION_SCORES: [1, 0]}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "9", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1", f"{a.ML_SEGMENT_PREFIX}r": 3}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "10", a.ML_TASK: "clustering",
                                        a.ML_PREDICTION_VALUE: "1"}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "", a.ML_PREDICTION_ID: "11", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1"}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_TASK: Task.BINARY, a.ML_PREDICTION_VALUE: "1",
                                        a.ML_LABEL_VALUE: 1.0}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "12", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1", a.ML_MODEL_VERSION: 2}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "13", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1", a.ML_PREDICTION_SCORES: [0.5],
                                        a.ML_PREDICTION_CLASSES: ["a", "b"]}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "14", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1", a.ML_PREDICTION_SCORE: math.nan}),
    ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "16", a.ML_TASK: Task.BINARY,
                                        a.ML_PREDICTION_VALUE: "1", "ml.future.attribute": "x"}),
    ev.log_record(ML_PREDICTION_EVENT, {f"ml.feature.f{i}": float(i) for i in range(80)}
                  | {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "15", a.ML_TASK: Task.BINARY,
                     a.ML_PREDICTION_VALUE: "1"}),
]


def _duplicate_key_record() -> LogRecord:
    rec = ev.log_record(ML_PREDICTION_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "d", a.ML_TASK: Task.BINARY,
                                              a.ML_PREDICTION_VALUE: "1", f"{a.ML_SEGMENT_PREFIX}r": "eu"})
    rec.attributes.append(KeyValue(key=a.ML_PREDICTION_VALUE, value=AnyValue(string_value="0")))
    rec.attributes.append(KeyValue(key=f"{a.ML_SEGMENT_PREFIX}r", value=AnyValue(string_value="us")))
    rec.attributes.append(KeyValue(key=f"{a.ML_FEATURE_PREFIX}x", value=AnyValue(string_value_strindex=3)))
    return rec


@fast
@pytest.mark.parametrize("extras", [False, True])
def test_odd_records_go_through_the_python_fallback(extras: bool) -> None:
    recs = [*ODD_RECORDS, _duplicate_key_record()]
    good = common_records(random.Random(1), 10)
    body = ev.request([x for pair in zip(recs, good * 3, strict=False) for x in pair]).SerializeToString()
    accepted, fallbacks = check(body, extras)
    assert accepted and fallbacks >= len(recs) - 2


# ---- fuzzed attribute values -------------------------------------------------------------------------------------
KEYS = [a.ML_MODEL_NAME, a.ML_MODEL_VERSION, a.ML_TASK, a.ML_PREDICTION_ID, a.ML_PREDICTION_VALUE,
        a.ML_PREDICTION_VALUES, a.ML_PREDICTION_SCORE, a.ML_PREDICTION_SCORES, a.ML_PREDICTION_CLASSES,
        a.ML_LABEL_VALUE, a.ML_LABEL_VALUES, a.ML_LABEL_RELEVANCE, f"{a.ML_SEGMENT_PREFIX}r",
        f"{a.ML_SEGMENT_PREFIX}c", f"{a.ML_FEATURE_PREFIX}x", a.ML_FEATURE_PREFIX, "ml.other", "other", ""]
scalars = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), st.sampled_from(["", "1", "0", "m", "binary", "regression", "é"])),
    st.builds(lambda s: AnyValue(double_value=s), st.floats(allow_nan=True, allow_infinity=True)),
    st.builds(lambda s: AnyValue(int_value=s), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda s: AnyValue(bool_value=s), st.booleans()),
    st.builds(lambda s: AnyValue(bytes_value=s), st.binary(max_size=4)),
    st.builds(lambda s: AnyValue(string_value_strindex=s), st.integers(0, 5)),
    st.just(AnyValue()),
)
values = st.one_of(
    scalars,
    st.builds(lambda xs: AnyValue(array_value=ArrayValue(values=xs)), st.lists(scalars, max_size=4)),
    st.builds(lambda xs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=x) for x in xs])),
              st.lists(scalars, max_size=2)),
)
records = st.builds(
    lambda name, kvs, t, o: LogRecord(event_name=name, time_unix_nano=t, observed_time_unix_nano=o,
                                      attributes=[KeyValue(key=k, value=v) for k, v in kvs]),
    st.sampled_from([ML_PREDICTION_EVENT, ML_LABEL_EVENT, "other"]),
    st.lists(st.tuples(st.sampled_from(KEYS), values), max_size=12),
    st.sampled_from([0, 1, 1_700_000_000_000_000_000, 2**63 + 5, 2**64 - 1]),
    st.sampled_from([0, 1_600_000_000_000_000_000]),
)


@fast
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(records, min_size=1, max_size=8), extras=st.booleans())
def test_fuzzed_values_same_result(recs: list[LogRecord], extras: bool) -> None:
    assert check(ev.request(recs).SerializeToString(), extras)[0]


# ---- byte mutations ------------------------------------------------------------------------------------------------
@fast
def test_mutated_bytes_never_accepted_by_c_alone_when_upb_refuses() -> None:
    rng = random.Random(3)
    base = ev.request(common_records(random.Random(5), 8) + ODD_RECORDS[:4]).SerializeToString()
    accepted = refused = 0
    for _ in range(3000):
        body = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            op, pos = rng.random(), rng.randrange(len(body))
            if op < 0.5:
                body[pos] = rng.randrange(256)
            elif op < 0.75:
                del body[pos:pos + rng.randint(1, 8)]
            else:
                body[pos:pos] = rng.randbytes(rng.randint(1, 4))
        ok, _ = check(bytes(body), rng.random() < 0.5)
        accepted += ok
        refused += python_path(bytes(body), False) == "DecodeError"
    print(f"mutations: C accepted {accepted}, upb refused {refused} of 3000")
    assert accepted > 100 and refused > 1000  # both verdicts were exercised


@fast
@pytest.mark.parametrize("body", [b"", b"\x00", b"\x0a", b"\x0a\x05abc", b"\x0b", b"\xff" * 11, b"\x0a\x00" * 3,
                                  b"\x08\x96\x01", b"\x0a\x02\x12\x00"])
def test_edge_bodies(body: bytes) -> None:
    check(body, True)


def test_invalid_utf8_and_deep_nesting_left_to_upb() -> None:
    rec = ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "x", a.ML_LABEL_VALUE: "é"})
    body = ev.request([rec]).SerializeToString().replace("é".encode(), b"\xed\xa0")  # a surrogate's first bytes
    assert python_path(body, True) == "DecodeError"
    with pytest.raises(DecodeError):
        decode_body(body, NOW)
    deep = AnyValue(string_value="x")
    for _ in range(20):  # 40 message levels: upb reads them (its limit is 100), the C walker stops at 32
        deep = AnyValue(array_value=ArrayValue(values=[deep]))
    rec = ev.log_record(ML_LABEL_EVENT, {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "x", a.ML_LABEL_VALUE: "1"})
    rec.body.CopyFrom(deep)
    body = ev.request([rec]).SerializeToString()
    if _native.decoder is not None:
        assert c_path(body, True)[0] is None  # handed back: deeper than the C decoder walks
    assert summary(decode_body(body, NOW)) == python_path(body, True)


# ---- resources ---------------------------------------------------------------------------------------------------
@fast
def test_no_reference_leak() -> None:
    """Decoding the same request many times (rows, extras, fallbacks, segment cache hits) keeps memory flat."""
    body = ev.request(common_records(random.Random(9), 50) + ODD_RECORDS).SerializeToString()
    for _ in range(50):
        decode_body(body, NOW, True)
    tracemalloc.start()
    try:
        first = tracemalloc.take_snapshot()
        for _ in range(400):
            decode_body(body, NOW, True)
            decode_body(body, NOW, False)
        growth = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(first, "filename"))
    finally:
        tracemalloc.stop()
    assert growth < 200_000, growth  # ~60 rows x 800 decodes would leak megabytes


def test_extension_is_built_where_the_tests_run() -> None:
    """CI installs with a compiler: the fast path must be the one under test (set OTEL_ML_PURE_PYTHON=1 to skip)."""
    import os

    if os.environ.get(_native.DISABLE_ENV, "") not in ("", "0"):
        pytest.skip("pure Python requested")
    assert _native.decoder is not None, _native.status
    assert _native.decoder.SOURCE_HASH == _native.source_hash()


def test_without_the_extension_decode_body_is_the_python_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "decoder", None)
    body = ev.request(common_records(random.Random(2), 30) + ODD_RECORDS).SerializeToString()
    for extras in (False, True):
        assert summary(decode_body(body, NOW, extras)) == python_path(body, extras)
    with pytest.raises(DecodeError):
        decode_body(b"\x0a\x05abc", NOW)


# ---- limits: strings and lists around the limits, every value kind on every ml.* key, both paths ----------------
SMALL = LimitsConfig(prediction_id_bytes=16, model_bytes=8, class_bytes=8, segment_bytes=8, feature_name_bytes=8,
                     feature_value_bytes=8, segments_per_record=2, features_per_record=3, classes_per_record=3)
LIMIT_KEYS = [*KEYS, f"{a.ML_SEGMENT_PREFIX}dimension-long", f"{a.ML_FEATURE_PREFIX}long-feature-name",
              f"{a.ML_SEGMENT_PREFIX}é€", f"{a.ML_FEATURE_PREFIX}f2", f"{a.ML_SEGMENT_PREFIX}s3"]
# strings of 0..20 bytes around the limits (7, 8, 9, 16, 17), ASCII and multi-byte (a 4-byte char across a limit)
sized = st.builds(lambda n, ch: (ch * n)[:n] if ch == "x" else ch * (n // len(ch.encode())),
                  st.sampled_from([0, 1, 7, 8, 9, 15, 16, 17, 20]), st.sampled_from(["x", "é", "€", "𝄞"]))
limit_scalars = st.one_of(
    st.builds(lambda s: AnyValue(string_value=s), sized),
    st.builds(lambda s: AnyValue(string_value=s), st.sampled_from(["binary", "multiclass", "regression", "ranking",
                                                                   "multilabel", "1", "m"])),
    scalars)
limit_values = st.one_of(
    limit_scalars,
    st.builds(lambda xs: AnyValue(array_value=ArrayValue(values=xs)), st.lists(limit_scalars, max_size=5)),
    st.builds(lambda xs: AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=x) for x in xs])),
              st.lists(limit_scalars, max_size=2)),
)
limit_records = st.builds(
    lambda name, kvs: LogRecord(event_name=name, time_unix_nano=1_700_000_000_000_000_000,
                                attributes=[KeyValue(key=k, value=v) for k, v in kvs]),
    st.sampled_from([ML_PREDICTION_EVENT, ML_LABEL_EVENT]),
    st.lists(st.tuples(st.sampled_from(LIMIT_KEYS), limit_values), max_size=12),
)


def _accounted(body: bytes, extras: bool, limits: LimitsConfig) -> Decoded:
    out = decode_body(body, NOW, extras, limits)
    assert out.ignored + out.rejected_count + len(out.predictions) + len(out.labels) == out.received
    assert a.RejectReason.INTERNAL_ERROR not in out.rejected, out.first_error  # every case has a precise check
    assert len(out.first_error.encode()) <= 256
    return out


@fast
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(limit_records, min_size=1, max_size=6), extras=st.booleans())
def test_fuzzed_limits_same_result_on_both_paths(recs: list[LogRecord], extras: bool) -> None:
    body = ev.request(recs).SerializeToString()
    assert check(body, extras, SMALL)[0]
    _accounted(body, extras, SMALL)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(limit_records, min_size=1, max_size=6), extras=st.booleans())
def test_fuzzed_limits_python_path_never_fails_a_request(recs: list[LogRecord], extras: bool) -> None:
    out = decode_request(ev.request(recs), NOW, extras, SMALL)
    assert out.ignored + out.rejected_count + len(out.predictions) + len(out.labels) == out.received == len(recs)
    assert a.RejectReason.INTERNAL_ERROR not in out.rejected, out.first_error


def _pred(**attrs: Any) -> LogRecord:
    base: dict[str, Any] = {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "p", a.ML_TASK: Task.BINARY,
                            a.ML_PREDICTION_VALUE: "1"}
    return ev.log_record(ML_PREDICTION_EVENT, {**base, **attrs}, 1_700_000_000_000_000_000)


LIMIT_CASES: list[tuple[str, LogRecord, str, str]] = [
    ("id", _pred(**{a.ML_PREDICTION_ID: "i" * 17}), a.RejectReason.TOO_LONG,
     "ml.prediction.id is 17 bytes (limit 16)"),
    ("id multibyte", _pred(**{a.ML_PREDICTION_ID: "é" * 9}), a.RejectReason.TOO_LONG,
     "ml.prediction.id is 18 bytes (limit 16)"),
    ("model", _pred(**{a.ML_MODEL_NAME: "m" * 9}), a.RejectReason.TOO_LONG, "ml.model.name is 9 bytes (limit 8)"),
    ("version", _pred(**{a.ML_MODEL_VERSION: "v" * 9}), a.RejectReason.TOO_LONG,
     "ml.model.version is 9 bytes (limit 8)"),
    ("task", _pred(**{a.ML_TASK: "t" * 65}), a.RejectReason.TOO_LONG, "ml.task is 65 bytes (limit 64)"),
    ("class", _pred(**{a.ML_PREDICTION_VALUE: "c" * 9}), a.RejectReason.TOO_LONG,
     "ml.prediction.value is 9 bytes (limit 8)"),
    ("label", _pred(**{a.ML_LABEL_VALUE: "€" * 3}), a.RejectReason.TOO_LONG, "ml.label.value is 9 bytes (limit 8)"),
    ("segment value", _pred(**{"ml.segment.r": "s" * 9}), a.RejectReason.TOO_LONG,
     "ml.segment.r is 9 bytes (limit 8)"),
    ("segment dimension", _pred(**{"ml.segment.dimension": "s"}), a.RejectReason.TOO_LONG,
     "ml.segment.dimension: segment dimension of 9 bytes (limit 8)"),
    ("segments", _pred(**{"ml.segment.a": "1", "ml.segment.b": "2", "ml.segment.c": "3"}), a.RejectReason.TOO_MANY,
     "more than 2 ml.segment.* attributes"),
    ("classes", _pred(**{a.ML_PREDICTION_CLASSES: ["a", "b", "c", "d"]}), a.RejectReason.TOO_MANY,
     "ml.prediction.classes has 4 items (limit 3)"),
    ("class item", _pred(**{a.ML_PREDICTION_CLASSES: ["a", "b" * 9]}), a.RejectReason.TOO_LONG,
     "ml.prediction.classes has an item of 9 bytes (limit 8)"),
    ("first in wire order", _pred(**{a.ML_PREDICTION_ID: 5, a.ML_MODEL_VERSION: "v" * 9}), a.RejectReason.TOO_LONG,
     "ml.model.version is 9 bytes (limit 8)"),
    ("long key shown elided", _pred(**{"ml.segment." + "d" * 100: "1"}), a.RejectReason.TOO_LONG,
     "ml.segment." + "d" * 53 + "…(111 bytes): segment dimension of 100 bytes (limit 8)"),
]


@pytest.mark.parametrize(("case", "record", "reason", "message"), LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_limit_rejections(case: str, record: LogRecord, reason: str, message: str, native: bool,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    if native and _native.decoder is None:
        pytest.skip(_native.status)
    if not native:
        monkeypatch.setattr(_native, "decoder", None)
    good = [_pred(**{a.ML_PREDICTION_ID: "good"}), ev.log_record(ML_LABEL_EVENT, {
        a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "good", a.ML_LABEL_VALUE: "1"})]
    body = ev.request([good[0], record, good[1]]).SerializeToString()
    out = _accounted(body, True, SMALL)
    assert dict(out.rejected) == {reason: 1}
    assert out.first_error == f"{reason}: {message}"
    assert (len(out.predictions), len(out.labels)) == (1, 1)
    if native:
        assert check(body, True, SMALL) == (True, 0)  # decided in C: the record was not handed to Python


@fast
def test_limit_rejected_in_c_without_copying_the_value() -> None:
    """A 16 MiB id is rejected from the raw bytes: no allocation of its size (traced)."""
    huge = _pred(**{a.ML_PREDICTION_ID: "x" * (16 << 20)})
    body = ev.request([huge, _pred()]).SerializeToString()
    tracemalloc.start()
    try:
        out = decode_body(body, NOW, True).materialized()  # > PART_BYTES: validated, then decoded in parts
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert dict(out.rejected) == {a.RejectReason.TOO_LONG: 1} and len(out.predictions) == 1
    assert out.first_error == "too_long: ml.prediction.id is 16777216 bytes (limit 4096)"
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_features_beyond_limits_are_dropped_and_counted(native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if native and _native.decoder is None:
        pytest.skip(_native.status)
    if not native:
        monkeypatch.setattr(_native, "decoder", None)
    rec = _pred(**{"ml.feature.a": 1.0, "ml.feature.long-name": 2.0, "ml.feature.b": "v" * 9, "ml.feature.c": "ok",
                   "ml.feature.d": 4.0, "ml.feature.e": 5.0})
    out = _accounted(ev.request([rec]).SerializeToString(), True, SMALL)
    assert out.extras[0] is not None and out.extras[0][0] == {"a": 1.0, "c": "ok", "d": 4.0}
    assert dict(out.dropped) == {FeatureDropReason.TOO_LONG: 2, FeatureDropReason.TOO_MANY: 1}
    # without a stage, features are not read at all: nothing dropped, nothing counted
    out = _accounted(ev.request([rec]).SerializeToString(), False, SMALL)
    assert not out.dropped and len(out.predictions) == 1


@fast
@pytest.mark.parametrize("extras", [False, True])
def test_parts_and_dry_pass_equal_the_whole(extras: bool) -> None:
    """``start``/``count`` ranges concatenate to the whole decode; ``dry`` counts like it and builds nothing."""
    assert _native.decoder is not None
    recs = common_records(random.Random(12), 120) + ODD_RECORDS + [_pred(**{a.ML_PREDICTION_ID: "z" * 5000})]
    body = ev.request(recs[:70]).SerializeToString() + ev.request(recs[70:]).SerializeToString()  # 2 resources
    whole = c_path(body, extras)[0]
    assert whole is not None
    limits = _c_limits(DEFAULT_LIMITS)
    merged = Decoded()
    received = ignored = 0
    for start in range(0, 200, 17):
        part = Decoded()

        def fallback(record: memoryview, part: Decoded = part) -> None:
            from otel_ml.processor.decode import _record

            rec = LogRecord.FromString(record)
            _record(rec, rec.event_name, part, NOW, extras)

        counts = _native.decoder.decode(body, NOW, extras, part.predictions, part.extras, part.labels, fallback,
                                        part.reject_limit, limits, start, 17)
        assert counts is not None and counts[4] == (start + 17 < len(recs))
        received, ignored = received + counts[0], ignored + counts[1]
        for reason, n in part.rejected.items():
            merged.rejected[reason] += n
        merged.first_error = merged.first_error or part.first_error
        merged.predictions += part.predictions
        merged.extras += part.extras
        merged.labels += part.labels
        merged.dropped.update({k: v for k, v in zip((FeatureDropReason.TOO_LONG, FeatureDropReason.TOO_MANY),
                                                    counts[2:4], strict=True) if v})
    merged.received, merged.ignored = received, ignored
    assert summary(merged) == whole
    dry = Decoded()
    counts = _native.decoder.decode(body, NOW, extras, dry.predictions, dry.extras, dry.labels, None, None, limits,
                                    dry=True)
    assert counts is not None and counts[:2] == (len(recs), whole[2][1])
    assert not dry.predictions and not dry.labels
