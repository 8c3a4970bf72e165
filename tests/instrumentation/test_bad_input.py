"""Bad input is capped, truncated or dropped per the documented limits, counted, and never raised."""

from __future__ import annotations

import math

import numpy as np
import pytest

import otel_ml
from otel_ml.instrumentation import limits as lim
from otel_ml.instrumentation.limits import TruncationReason as R
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from tests.support.otlp_sink import OtlpSink


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


def _configure(sink: OtlpSink) -> None:
    otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.05, metric_interval=60)


def _truncated(sink: OtlpSink) -> dict[str, int]:
    return {p[0][a.ML_REASON]: p[1].as_int for p in sink.metric_points(m.CLIENT_VALUES_TRUNCATED.name)}


def _dropped(sink: OtlpSink) -> dict[str, int]:
    return {p[0][a.ML_REASON]: p[1].as_int for p in sink.metric_points(m.CLIENT_EVENTS_DROPPED.name)}


def test_features_capped_and_counted(sink: OtlpSink) -> None:
    _configure(sink)
    mon = otel_ml.ModelMonitor("m", task="regression")
    features: dict[str, object] = {
        "nan": math.nan, "inf": np.float64("inf"), "huge": "x" * 5000, "obj": object(), "bad": Unprintable(),
        "big_int": 2**80, "none": None, "np_int": np.int16(4), "np_bool": np.bool_(True), "k" * 300: 1.0,
    }
    features.update({f"f{i}": float(i) for i in range(lim.MAX_FEATURES)})
    mon.log_prediction(1.0, features=features, segments={"s": "y" * 2000, **{f"d{i}": i for i in range(20)}})
    assert otel_ml.force_flush(10)
    (rec,) = sink.wait_for_log_records(1)
    attrs = rec.attributes
    assert "ml.feature.nan" not in attrs and "ml.feature.inf" not in attrs and "ml.feature.bad" not in attrs
    assert attrs["ml.feature.huge"] == "x" * lim.MAX_STRING_LENGTH
    assert attrs["ml.feature.obj"].startswith("<object object")
    assert attrs["ml.feature.big_int"] == float(2**80)
    assert attrs["ml.feature.np_int"] == 4 and attrs["ml.feature.np_bool"] is True
    assert "ml.feature." + "k" * lim.MAX_KEY_LENGTH in attrs
    # the first MAX_FEATURES features given are considered; nan, inf, bad and none among them are left out
    assert sum(k.startswith("ml.feature.") for k in attrs) == lim.MAX_FEATURES - 4
    assert attrs["ml.segment.s"] == "y" * lim.MAX_STRING_LENGTH
    assert sum(k.startswith("ml.segment.") for k in attrs) == lim.MAX_SEGMENTS
    counts = _truncated(sink)
    assert counts[R.NOT_FINITE] == 2 and counts[R.UNSERIALIZABLE] == 1 and counts[R.TOO_MANY_FEATURES] == 1
    assert counts[R.TOO_MANY_SEGMENTS] == 1 and counts[R.TOO_LONG] >= 3 and counts[R.WRONG_TYPE] >= 2


def test_invalid_predictions_and_labels_are_dropped_and_counted(sink: OtlpSink) -> None:
    _configure(sink)
    reg = otel_ml.ModelMonitor("m", task="regression")
    reg.log_prediction(math.nan)                 # not finite: no prediction value -> dropped
    reg.log_prediction("not a number")           # wrong type
    reg.log_prediction(2.0, scores=[math.inf])   # bad scores only: event kept without them
    reg.log_label("p1", object())                # wrong label type for regression -> dropped
    cls = otel_ml.ModelMonitor("c", task="multiclass", classes=["a", "b"])
    cls.log_prediction(None)                     # nothing to predict from
    cls.log_prediction("a", scores=[0.1, 0.2, 0.7])  # scores misaligned with classes: left out
    cls.log_prediction("b", scores=np.arange(lim.MAX_ARRAY_LENGTH + 5))  # misaligned, too
    cls.log_label("p2", "z" * 3000)              # truncated, kept
    cls.log_predictions(np.array(["a", "b"]), scores=np.array([[0.5, 0.5]]))  # short scores: rows without
    ids = cls.log_predictions(object())          # unsized: ignored, empty ids
    assert len(ids) == 0
    assert otel_ml.force_flush(10)
    records = sink.wait_for_log_records(6)
    values = [r.attributes.get(a.ML_PREDICTION_VALUE, r.attributes.get(a.ML_LABEL_VALUE)) for r in records]
    assert values == [2.0, "a", "b", "z" * lim.MAX_STRING_LENGTH, "a", "b"]
    assert a.ML_PREDICTION_SCORES not in records[1].attributes
    assert records[4].attributes[a.ML_PREDICTION_SCORES] == [0.5, 0.5]
    assert a.ML_PREDICTION_SCORES not in records[5].attributes
    dropped = {(p[0][a.ML_MODEL_NAME], p[0][a.ML_REASON]): p[1].as_int
               for p in sink.metric_points(m.CLIENT_EVENTS_DROPPED.name)}
    assert dropped == {("m", "invalid"): 3, ("c", "invalid"): 1}
    assert _truncated(sink)[R.NOT_FINITE] == 2


@pytest.mark.parametrize("value", [[1, 2, 3], {"a": 1}, np.zeros((3, 3)), "s" * 10, None])
def test_instrumented_odd_results_never_raise(sink: OtlpSink, value: object) -> None:
    _configure(sink)
    mon = otel_ml.ModelMonitor("m", task="binary", classes=["n", "p"])
    out = mon.instrument(lambda x: value)({"f": 1})
    assert out is value
    assert otel_ml.force_flush(10)


def test_more_rows_than_ids_are_cut_and_counted(sink: OtlpSink) -> None:
    _configure(sink)
    mon = otel_ml.ModelMonitor("m", task="regression")
    ids = mon.log_predictions(np.array([1.0, 2.0, 3.0]), prediction_ids=["a", "b"])
    assert list(ids) == ["a", "b"]
    assert otel_ml.force_flush(10)
    assert [r.attributes[a.ML_PREDICTION_ID] for r in sink.wait_for_log_records(2)] == ["a", "b"]
    assert _truncated(sink) == {R.TOO_MANY_ROWS: 1}


def test_class_indices_become_class_names_or_are_refused_and_counted(sink: OtlpSink) -> None:
    _configure(sink)
    names = otel_ml.ModelMonitor("names", task="multiclass", classes=["cat", "dog", "emu"])
    proba = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]])
    names.log_predictions(proba.argmax(1), scores=proba)                       # batch: the column-wise path
    names.log_predictions(list(proba.argmax(1)), scores=proba)                 # batch: the generic path
    names.log_prediction(np.int64(2), scores=proba[2])                         # single numpy int
    names.log_prediction(1)                                                    # single Python int
    names.log_predictions(np.array([0, 7, -1]), scores=proba)                  # unknown indices: 2 rows dropped
    names.log_prediction(3)                                                    # unknown index: dropped
    names.log_label("some-id", 0)                                              # labels: the same rule
    numeric = otel_ml.ModelMonitor("numeric", task="multiclass", classes=[10, 20, 30])
    numeric.log_prediction(1)                                                  # integer names: 1 is a name
    numeric.log_predictions(np.array([10, 20]))
    assert otel_ml.force_flush(10)
    records = sink.wait_for_log_records(3 + 3 + 1 + 1 + 1 + 1 + 1 + 2)
    values = [(r.attributes[a.ML_MODEL_NAME], r.attributes.get(a.ML_PREDICTION_VALUE, r.attributes.get(
        a.ML_LABEL_VALUE))) for r in records]
    assert values == [("names", v) for v in ["dog", "cat", "emu", "dog", "cat", "emu", "emu", "dog", "cat", "cat"]] \
        + [("numeric", "1"), ("numeric", "10"), ("numeric", "20")]
    assert _truncated(sink)["unknown_class_index"] == 3
    assert _dropped(sink)["invalid"] == 3


def test_generator_functions_are_refused_and_iterator_results_are_not_consumed(sink: OtlpSink) -> None:
    _configure(sink)
    mon = otel_ml.ModelMonitor("gen", task="regression")

    def stream(x: float):  # type: ignore[no-untyped-def]
        yield x

    async def astream(x: float):  # type: ignore[no-untyped-def]
        yield x

    for target in (stream, astream):
        with pytest.raises(otel_ml.ConfigurationError, match="generator function"):
            mon.instrument(target)
    lazy = mon.instrument(lambda x: iter([x]))   # a plain function that returns an iterator
    result = lazy(1.0)
    assert list(result) == [1.0]                # untouched: the caller still gets every item
    assert otel_ml.force_flush(10)
    assert sink.log_records() == []
    assert _dropped(sink)["invalid"] == 1
