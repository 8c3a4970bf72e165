"""Malformed and fuzzed OTLP: never a crash, exact rejection counts, good records of the same request kept."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from otel_ml.processor.decode import decode_request
from otel_ml.processor.records import L_NUM, L_STR, P_NUM, P_STR, SEGMENT
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import RejectReason
from tests.processor.conftest import label_event, prediction_event
from tests.support import otlp_events as ev

BAD_RECORDS: list[tuple[str, Any]] = [
    (RejectReason.MISSING_ATTRIBUTE, ev.log_record("ml.prediction", {a.ML_MODEL_NAME: "m", a.ML_TASK: "binary",
                                                                      a.ML_PREDICTION_VALUE: "1"})),
    (RejectReason.MISSING_ATTRIBUTE, ev.log_record("ml.label", {a.ML_MODEL_NAME: "m", a.ML_LABEL_VALUE: "1"})),
    (RejectReason.MISSING_ATTRIBUTE, ev.log_record("ml.label", {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "x"})),
    (RejectReason.MISSING_ATTRIBUTE, prediction_event("", value="1")),
    (RejectReason.MISSING_ATTRIBUTE, ev.log_record("ml.prediction", {a.ML_MODEL_NAME: "m", a.ML_PREDICTION_ID: "q",
                                                                      a.ML_TASK: "binary"})),
    (RejectReason.WRONG_TYPE, prediction_event("p", value=1.5)),
    (RejectReason.WRONG_TYPE, prediction_event("p", task="regression", value="high")),
    (RejectReason.WRONG_TYPE, prediction_event("p", task="multilabel", value="a")),
    (RejectReason.WRONG_TYPE, prediction_event("p", task="ranking", value=[1, 2])),
    (RejectReason.WRONG_TYPE, ev.log_record("ml.prediction", {a.ML_MODEL_NAME: 3, a.ML_PREDICTION_ID: "p",
                                                               a.ML_TASK: "binary", a.ML_PREDICTION_VALUE: "1"})),
    (RejectReason.WRONG_TYPE, prediction_event("p", **{a.ML_PREDICTION_SCORE: "0.3"})),
    (RejectReason.WRONG_TYPE, prediction_event("p", **{a.ML_PREDICTION_SCORES: [0.5, 0.5],
                                                       a.ML_PREDICTION_CLASSES: ["a"]})),
    (RejectReason.WRONG_TYPE, prediction_event("p", **{"ml.segment.region": 3})),
    (RejectReason.WRONG_TYPE, label_event("p", value={"nested": "map"})),
    (RejectReason.WRONG_TYPE, label_event("p", value=["a"], **{a.ML_LABEL_RELEVANCE: [1.0, 2.0]})),
    (RejectReason.WRONG_TYPE, prediction_event("p", value=b"\x00bytes")),
    (RejectReason.UNKNOWN_TASK, prediction_event("p", task="clustering")),
    (RejectReason.NOT_FINITE, prediction_event("p", task="regression", value=math.nan)),
    (RejectReason.NOT_FINITE, prediction_event("p", task="regression", value=math.inf)),
    (RejectReason.NOT_FINITE, prediction_event("p", **{a.ML_PREDICTION_SCORE: math.nan})),
    (RejectReason.NOT_FINITE, label_event("p", value=math.nan)),
    (RejectReason.NOT_FINITE, prediction_event("p", **{a.ML_PREDICTION_SCORES: [0.5, math.inf]})),
]


@pytest.mark.parametrize(("reason", "record"), BAD_RECORDS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD_RECORDS)])
def test_bad_record_rejected_good_ones_kept(reason: str, record: Any) -> None:
    good = [prediction_event("g1"), label_event("g2"), ev.log_record("app.log", {"x": 1}), LogRecord()]
    out = decode_request(ev.request([good[0], record, *good[1:]]), 1.0)
    assert dict(out.rejected) == {reason: 1}, out.first_error
    assert out.first_error.startswith(reason)
    assert (len(out.predictions), len(out.labels), out.ignored, out.received) == (1, 1, 2, 5)


def test_values_and_segments_decoded() -> None:
    out = decode_request(ev.request([
        prediction_event("a", task="multiclass", value=7, **{"ml.segment.z": "1", "ml.segment.b": "2"}),
        prediction_event("b", task="regression", value=3),
        prediction_event("c", value=True),
        label_event("d", value=2), label_event("e", value=2.5), label_event("f", value=False),
    ]), 5.0)
    p = out.predictions
    assert (p[0][P_STR], p[0][SEGMENT]) == ("7", "b=2,z=1")
    assert p[1][P_NUM] == 3.0 and p[2][P_STR] == "True"
    labels = out.labels
    assert (labels[0][L_STR], labels[0][L_NUM]) == ("2", 2.0)
    assert (labels[1][L_STR], labels[1][L_NUM]) == (None, 2.5)
    assert labels[2][L_STR] == "False"


def test_garbage_bytes_raise_decode_error_only() -> None:
    from google.protobuf.message import DecodeError

    with pytest.raises(DecodeError):
        ExportLogsServiceRequest.FromString(b"\xff\xff\xff\xff garbage")


_any = st.recursive(
    st.one_of(st.text(max_size=5), st.floats(allow_nan=True), st.integers(-(2**63), 2**63 - 1), st.booleans(),
              st.binary(max_size=4)),
    lambda inner: st.lists(inner, max_size=3), max_leaves=6)
_keys = st.sampled_from([a.ML_MODEL_NAME, a.ML_PREDICTION_ID, a.ML_TASK, a.ML_PREDICTION_VALUE, a.ML_PREDICTION_VALUES,
                         a.ML_PREDICTION_SCORE, a.ML_PREDICTION_SCORES, a.ML_PREDICTION_CLASSES, a.ML_LABEL_VALUE,
                         a.ML_LABEL_VALUES, a.ML_LABEL_RELEVANCE, a.ML_MODEL_VERSION, "ml.feature.x",
                         "ml.segment.r", "other"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ml.prediction", "ml.label", "x", ""]),
                          st.dictionaries(_keys, _any, max_size=8)), max_size=6))
def test_fuzzed_records_never_crash_and_are_accounted(records: list[tuple[str, dict[str, Any]]]) -> None:
    recs = []
    for name, attrs in records:
        try:
            recs.append(ev.log_record(name, attrs))
        except TypeError:
            continue
    out = decode_request(ev.request(recs), 1.0)
    assert out.received == len(recs)
    assert out.ignored + out.rejected_count + len(out.predictions) + len(out.labels) == len(recs)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_fuzzed_bytes_decode_or_fail_cleanly(data: bytes) -> None:
    from google.protobuf.message import DecodeError

    try:
        req = ExportLogsServiceRequest.FromString(data)
    except DecodeError:
        return
    out = decode_request(req, 1.0)
    assert out.ignored + out.rejected_count + len(out.predictions) + len(out.labels) == out.received


def test_kvlist_and_empty_values_are_wrong_type() -> None:
    rec = prediction_event("p")
    rec.attributes.append(KeyValue(key=a.ML_PREDICTION_SCORE, value=AnyValue()))
    out = decode_request(ev.request([rec]), 1.0)
    assert dict(out.rejected) == {RejectReason.WRONG_TYPE: 1}


def test_stage_only_attributes_are_validated_only_for_stages() -> None:
    rec = prediction_event("p", **{a.ML_PREDICTION_SCORES: [0.5, math.inf], a.ML_PREDICTION_CLASSES: ["0", "1"]})
    with_stages = decode_request(ev.request([rec]), 1.0, extras=True)
    assert dict(with_stages.rejected) == {RejectReason.NOT_FINITE: 1}
    without = decode_request(ev.request([rec]), 1.0, extras=False)
    assert without.rejected_count == 0 and len(without.predictions) == 1


def test_nan_scores_are_unscored_labels() -> None:
    """A multilabel model that scores only the labels it predicts sends NaN for the others: accepted by both
    decoders (the C one hands the record to the Python path), the NaN kept for the stage."""
    from otel_ml.processor.decode import decode_body

    rec = prediction_event("p", task="multilabel", value=["a"], **{
        a.ML_PREDICTION_SCORES: [0.9, math.nan, 2], a.ML_PREDICTION_CLASSES: ["a", "b", "c"]})
    for out in (decode_request(ev.request([rec]), 1.0, extras=True),
                decode_body(ev.request([rec]).SerializeToString(), 1.0, extras=True)):
        assert out.rejected_count == 0 and len(out.predictions) == 1
        scores = out.extras[0][1]
        assert scores[0] == 0.9 and math.isnan(scores[1]) and scores[2] == 2.0
