"""Wire tests: events and metrics through the real export path into in-process OTLP gRPC and HTTP receivers,
decoded with opentelemetry-proto, every field of every record asserted."""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np
import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_ml
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.events import (
    EVENT_SCHEMA_VERSION,
    INSTRUMENTATION_SCOPE,
    ML_LABEL_EVENT,
    ML_PREDICTION_EVENT,
    SCHEMA_VERSION_ATTRIBUTE,
)
from tests.support.otlp_sink import OtlpSink

ID = re.compile(r"^[0-9a-f]{16}-[0-9a-f]+(\.[0-9a-f]+)?$")
RESOURCE = {"service.name": "fraud-api", "deployment.environment.name": "test", "service.instance.id": "i-1"}

PROTOCOLS = [("grpc", "none"), ("grpc", "gzip"), ("http/protobuf", "none"), ("http/protobuf", "gzip")]


def _configure(sink: OtlpSink, protocol: str, compression: str, **kw: Any) -> None:
    endpoint = sink.grpc_endpoint if protocol == "grpc" else sink.http_endpoint
    otel_ml.configure(endpoint=endpoint, protocol=protocol, compression=compression, resource=RESOURCE,
                      headers={"x-tenant": "t1"}, schedule_delay=0.05, metric_interval=60, **kw)


def _binary() -> otel_ml.ModelMonitor:
    return otel_ml.ModelMonitor("fraud", version="2024-06-01", task="binary", classes=["legit", "fraud"],
                                features=["amount", "country", "new_user", "items", "score_in"],
                                segments=["region"])


BINARY_CONST = {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "2024-06-01", a.ML_TASK: "binary",
                a.ML_PREDICTION_CLASSES: ["legit", "fraud"]}


@pytest.mark.parametrize(("protocol", "compression"), PROTOCOLS)
def test_every_field_of_every_record(sink: OtlpSink, protocol: str, compression: str) -> None:
    _configure(sink, protocol, compression)
    mon = _binary()
    before = time.time_ns()
    features = {"amount": 12.5, "country": "FR", "new_user": True, "items": 3, "score_in": 0.25, "ignored": 1}
    pid = mon.log_prediction("fraud", scores=[0.1, 0.9], features=features, segments={"region": "eu"})
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("inference") as span:
        pid_span = mon.log_prediction(scores=0.2)
        ctx = span.get_span_context()
    mon.log_label(pid, "legit")
    assert mon.log_pair("legit", "legit", prediction_id="req-7") == "req-7"
    ids = mon.log_predictions(scores=np.array([[0.3, 0.7], [0.8, 0.2]]),
                              features={"amount": np.array([1.0, 2.0]), "country": ["DE", "US"]},
                              segments={"region": np.array(["eu", "us"])})
    mon.log_labels(ids, np.array(["fraud", "legit"]))
    labels_only = otel_ml.ModelMonitor("fraud")
    labels_only.log_label("req-7", "legit")
    assert otel_ml.force_flush(10)
    after = time.time_ns()

    records = sink.wait_for_log_records(9)
    assert len(records) == 9
    for r in records:
        assert r.resource == RESOURCE
        assert (r.scope_name, r.scope_version) == (INSTRUMENTATION_SCOPE, otel_ml.__version__)
        assert r.scope_attributes == {SCHEMA_VERSION_ATTRIBUTE: EVENT_SCHEMA_VERSION}
        rec = r.record
        assert before <= rec.time_unix_nano <= after
        assert rec.observed_time_unix_nano == rec.time_unix_nano
        assert rec.severity_number == 0 and rec.severity_text == "" and not rec.HasField("body")
        assert rec.dropped_attributes_count == 0
        assert rec.event_name in (ML_PREDICTION_EVENT, ML_LABEL_EVENT)
        assert ID.match(r.attributes[a.ML_PREDICTION_ID]) or r.attributes[a.ML_PREDICTION_ID] == "req-7"
        if rec.event_name != ML_PREDICTION_EVENT or r.attributes[a.ML_PREDICTION_ID] != pid_span:
            assert (rec.trace_id, rec.span_id, rec.flags) == (b"", b"", 0)

    got = [(r.record.event_name, r.attributes) for r in records]
    assert got == [
        (ML_PREDICTION_EVENT, {**BINARY_CONST, a.ML_PREDICTION_ID: pid, a.ML_PREDICTION_VALUE: "fraud",
                               a.ML_PREDICTION_SCORE: 0.9, a.ML_PREDICTION_SCORES: [0.1, 0.9],
                               "ml.feature.amount": 12.5, "ml.feature.country": "FR", "ml.feature.new_user": True,
                               "ml.feature.items": 3, "ml.feature.score_in": 0.25, "ml.segment.region": "eu"}),
        (ML_PREDICTION_EVENT, {**BINARY_CONST, a.ML_PREDICTION_ID: pid_span, a.ML_PREDICTION_VALUE: "legit",
                               a.ML_PREDICTION_SCORE: 0.2}),
        (ML_LABEL_EVENT, {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "2024-06-01", a.ML_PREDICTION_ID: pid,
                          a.ML_LABEL_VALUE: "legit"}),
        (ML_PREDICTION_EVENT, {**BINARY_CONST, a.ML_PREDICTION_ID: "req-7", a.ML_PREDICTION_VALUE: "legit",
                               a.ML_LABEL_VALUE: "legit"}),
        (ML_PREDICTION_EVENT, {**BINARY_CONST, a.ML_PREDICTION_ID: ids[0], a.ML_PREDICTION_VALUE: "fraud",
                               a.ML_PREDICTION_SCORE: 0.7, a.ML_PREDICTION_SCORES: [0.3, 0.7],
                               "ml.feature.amount": 1.0, "ml.feature.country": "DE", "ml.segment.region": "eu"}),
        (ML_PREDICTION_EVENT, {**BINARY_CONST, a.ML_PREDICTION_ID: ids[1], a.ML_PREDICTION_VALUE: "legit",
                               a.ML_PREDICTION_SCORE: 0.2, a.ML_PREDICTION_SCORES: [0.8, 0.2],
                               "ml.feature.amount": 2.0, "ml.feature.country": "US", "ml.segment.region": "us"}),
        (ML_LABEL_EVENT, {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "2024-06-01", a.ML_PREDICTION_ID: ids[0],
                          a.ML_LABEL_VALUE: "fraud"}),
        (ML_LABEL_EVENT, {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "2024-06-01", a.ML_PREDICTION_ID: ids[1],
                          a.ML_LABEL_VALUE: "legit"}),
        (ML_LABEL_EVENT, {a.ML_MODEL_NAME: "fraud", a.ML_PREDICTION_ID: "req-7", a.ML_LABEL_VALUE: "legit"}),
    ]
    linked = records[1].record
    assert linked.trace_id == ctx.trace_id.to_bytes(16, "big")
    assert linked.span_id == ctx.span_id.to_bytes(8, "big")
    assert linked.flags == int(ctx.trace_flags)

    transport = "grpc" if protocol == "grpc" else "http"
    for req in sink.requests:
        assert req.transport == transport
        assert req.headers["x-tenant"] == "t1"
        if transport == "http":
            assert req.headers.get("content-encoding") == ("gzip" if compression == "gzip" else None)

    # metrics: cumulative, with semconv names and attributes
    model = {a.ML_MODEL_NAME: "fraud", a.ML_MODEL_VERSION: "2024-06-01"}
    preds = {p[0][a.ML_CLASS]: p[1].as_int for p in sink.metric_points(m.CLIENT_PREDICTIONS.name)}
    assert preds == {"fraud": 2, "legit": 3}
    for attrs, point in sink.metric_points(m.CLIENT_PREDICTIONS.name):
        assert {k: attrs[k] for k in model} == model
        assert point.start_time_unix_nano <= point.time_unix_nano
    (score_attrs, score), = sink.metric_points(m.CLIENT_PREDICTION_SCORE.name)
    assert score_attrs == model and score.count == 4 and list(score.explicit_bounds) == list(m.SCORE_BUCKETS)
    assert score.sum == pytest.approx(0.9 + 0.2 + 0.7 + 0.2)
    exported = {p[0][a.ML_MODEL_NAME]: p[1].as_int for p in sink.metric_points(m.CLIENT_EVENTS_EXPORTED.name)}
    assert exported == {"fraud": 9}
    assert sink.metric_points(m.CLIENT_EVENTS_DROPPED.name) == []


TASK_CASES = [
    ("multiclass", dict(classes=["cat", "dog", "fox"]), dict(prediction=None, scores=[0.2, 0.5, 0.3]),
     {a.ML_PREDICTION_VALUE: "dog", a.ML_PREDICTION_SCORE: 0.5, a.ML_PREDICTION_SCORES: [0.2, 0.5, 0.3]},
     "dog", {a.ML_LABEL_VALUE: "dog"}),
    ("regression", {}, dict(prediction=np.float32(2.5), scores=None), {a.ML_PREDICTION_VALUE: 2.5},
     3.25, {a.ML_LABEL_VALUE: 3.25}),
    ("multilabel", dict(classes=["a", "b", "c"]), dict(prediction=None, scores=np.array([0.9, 0.1, 0.6])),
     {a.ML_PREDICTION_VALUES: ["a", "c"], a.ML_PREDICTION_SCORES: [0.9, 0.1, 0.6]},
     {"a"}, {a.ML_LABEL_VALUES: ["a"]}),
    ("ranking", {}, dict(prediction=["i3", "i1", 7], scores=None), {a.ML_PREDICTION_VALUES: ["i3", "i1", "7"]},
     ["i1"], {a.ML_LABEL_VALUES: ["i1"]}),
]


@pytest.mark.parametrize(("task", "extra", "call", "expected", "label", "label_expected"), TASK_CASES)
def test_tasks_over_http(sink: OtlpSink, task: str, extra: dict[str, object], call: dict[str, object],
                         expected: dict[str, object], label: object, label_expected: dict[str, object]) -> None:
    _configure(sink, "http/protobuf", "none")
    mon = otel_ml.ModelMonitor("m", version="v", task=task, **extra)  # type: ignore[arg-type]
    pid = mon.log_prediction(call["prediction"], scores=call["scores"])
    mon.log_label(pid, label)
    assert otel_ml.force_flush(10)
    pred, lab = sink.wait_for_log_records(2)
    const: dict[str, Any] = {a.ML_MODEL_NAME: "m", a.ML_MODEL_VERSION: "v", a.ML_TASK: task}
    if "classes" in extra:
        const[a.ML_PREDICTION_CLASSES] = extra["classes"]
    assert pred.attributes == {**const, a.ML_PREDICTION_ID: pid, **expected}
    assert lab.attributes == {a.ML_MODEL_NAME: "m", a.ML_MODEL_VERSION: "v", a.ML_PREDICTION_ID: pid,
                              **label_expected}


def test_classes_are_strings_on_the_wire(sink: OtlpSink) -> None:
    _configure(sink, "grpc", "none")
    mon = otel_ml.ModelMonitor("digits", task="multiclass", classes=[0, 1, 2])
    mon.log_predictions(np.array([0, 2, 1], dtype=np.int64))
    mon.log_prediction(True)
    assert otel_ml.force_flush(10)
    records = sink.wait_for_log_records(4)
    assert [r.attributes[a.ML_PREDICTION_VALUE] for r in records] == ["0", "2", "1", "True"]
    assert records[0].attributes[a.ML_PREDICTION_CLASSES] == ["0", "1", "2"]
    assert records[0].attributes[a.ML_MODEL_VERSION] == ""


def test_binary_bare_probability_is_the_positive_score(sink: OtlpSink) -> None:
    _configure(sink, "http/protobuf", "none")
    named = otel_ml.ModelMonitor("named", task="binary", classes=["legit", "fraud"], threshold=0.7)
    bare = otel_ml.ModelMonitor("bare", task="binary")
    named.instrument(lambda x: 0.83)({"f": 1.0})
    named.instrument(lambda x: np.float32(0.5))({"f": 1.0})
    bare.log_prediction(0.2)
    bare.log_prediction(1)  # a class, not a probability
    assert otel_ml.force_flush(10)
    got = [(r.attributes[a.ML_PREDICTION_VALUE], r.attributes.get(a.ML_PREDICTION_SCORE))
           for r in sink.wait_for_log_records(4)]
    assert got == [("fraud", 0.83), ("legit", 0.5), ("0", 0.2), ("1", None)]


@pytest.mark.parametrize(("protocol", "compression"), [("grpc", "none"), ("http/protobuf", "gzip")])
def test_multilabel_partial_scores_reach_the_processor(sink: OtlpSink, protocol: str, compression: str) -> None:
    """A multilabel model that scores only the labels it predicts sends NaN for the others: the SDK keeps the vector
    (nothing counted as dropped or truncated), NaN travels on the wire, and both processor decoders accept it as
    "not scored" (an infinite score still drops the vector)."""
    import math

    from otel_ml.processor.decode import decode_body, decode_request
    from otel_ml.semconv.events import ML_PREDICTION_EVENT as PRED

    _configure(sink, protocol, compression)
    mon = otel_ml.ModelMonitor("tagger", task="multilabel", classes=["a", "b", "c"])
    mon.log_prediction(["a"], scores=[0.9, math.nan, math.nan])
    mon.log_prediction(None, scores=np.array([math.nan, 0.7, 0.2]))  # predicted set from the scored labels
    mon.log_prediction(["c"], scores=[0.1, math.inf, 0.8])
    assert otel_ml.force_flush(10)
    first, second, third = sink.wait_for_log_records(3)
    got = first.attributes[a.ML_PREDICTION_SCORES]
    assert got[0] == 0.9 and math.isnan(got[1]) and math.isnan(got[2])
    assert second.attributes[a.ML_PREDICTION_VALUES] == ["b"]
    assert a.ML_PREDICTION_SCORES not in third.attributes  # infinite: the vector is dropped, counted
    assert {p[0][a.ML_REASON]: p[1].as_int for p in sink.metric_points(m.CLIENT_VALUES_TRUNCATED.name)} == {
        "not_finite": 1}  # the infinite one only
    request = sink.messages("logs")[0]
    for out in (decode_request(request, 1.0, extras=True), decode_body(request.SerializeToString(), 1.0)):
        assert out.rejected_count == 0
        rows = [e for e in out.extras if e is not None]
        assert len(rows) == 3 and math.isnan(rows[0][1][1]) and rows[1][1][1] == 0.7
    assert PRED == first.record.event_name
