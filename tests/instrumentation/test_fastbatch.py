"""The column-wise batch encoder is byte-for-byte the generic per-row path: same records, counts and metrics.

Each case runs one batch through the converter's ``batch`` twice on the same export queue (fast encoder on, then
off) and compares the encoded ``LogRecord`` bytes, the truncation counts, the drops and the aggregated metrics. The
records are also decoded with ``opentelemetry-proto`` to check they are valid OTLP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest
from opentelemetry.context import get_current
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk.trace import TracerProvider

import otel_ml
from otel_ml.instrumentation.export_queue import ExportQueue
from otel_ml.instrumentation.ids import IDS
from otel_ml.instrumentation.records import MISSING
from otel_ml.semconv import attributes as a
from tests.instrumentation.equivalence import counts, export_queue, reset_counts

ROWS = 64


def _run(p: ExportQueue, fast: bool, spec: Any, ids: Any, predictions: Any, scores: Any, features: Any,
         segments: Any = None, labels: Any = MISSING, context: Any = None) -> tuple[list[bytes], tuple[Any, ...]]:
    reset_counts(p)
    encoder = p.converter.batch_encoder
    if not fast:
        p.converter.batch_encoder = None
    try:
        items = list(p.converter.batch(spec, 123_456_789, ids, predictions, scores, features, segments, labels, context,
                                       None))
    finally:
        p.converter.batch_encoder = encoder
    return [rec for _, rec in items], counts(p)


def _same(p: ExportQueue, spec: Any, *args: Any, fast_taken: bool = True, **kwargs: Any) -> list[bytes]:
    calls: list[bool] = []
    real = p.converter.batch_encoder
    assert real is not None
    original = real._encode

    def spy(*a: Any, **k: Any) -> Any:
        calls.append(True)
        return original(*a, **k)

    real._encode = spy  # type: ignore[method-assign]
    try:
        fast_records, fast_state = _run(p, True, spec, *args, **kwargs)
    finally:
        del real._encode
    generic_records, generic_state = _run(p, False, spec, *args, **kwargs)
    assert bool(calls) is fast_taken
    assert fast_records == generic_records
    assert fast_state == generic_state
    for rec in fast_records:
        LogRecord.FromString(rec)
    return fast_records


def _spec(task: str = "binary", classes: list[str] | None = None, **kw: Any) -> Any:
    return otel_ml.ModelMonitor("m", version="2", task=task, classes=classes or ["no", "yes"], **kw)._spec


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({"amount": rng.normal(size=n) * 1e6, "country": rng.choice(["FR", "DE", "ÜS"], n),
                         "new_user": rng.random(n) > 0.5, "items": rng.integers(-5, 9, n),
                         "f32": rng.random(n).astype(np.float32)})


@pytest.mark.parametrize("seed", range(4))
def test_random_binary_batches_match_the_generic_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = export_queue()
    spec = _spec(threshold=float(rng.random()))
    frame = _frame(rng, ROWS)
    proba = rng.random((ROWS, 2))
    _same(p, spec, IDS.new_batch(ROWS), None, proba, frame)
    _same(p, spec, IDS.new_batch(ROWS), None, proba[:, 1], frame, {"region": "eu", "tier": 3})
    _same(p, spec, IDS.new_batch(ROWS), np.array(["no", "yes"])[rng.integers(0, 2, ROWS)], proba,
          rng.normal(size=(ROWS, 4)))
    _same(p, spec, IDS.new_batch(ROWS), proba, None, None)  # predict_proba output as the prediction


@pytest.mark.parametrize("seed", range(3))
def test_random_multiclass_batches_match_the_generic_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = export_queue()
    spec = _spec("multiclass", ["a", "b", "c"], features=["x", "y"])
    scores = rng.random((ROWS, 3)).astype(np.float32)
    scores[0] = [0.5, 0.5, 0.1]  # a tie: the first maximum wins on both paths
    _same(p, spec, IDS.new_batch(ROWS), None, scores, rng.normal(size=(ROWS, 3)))  # third column not selected
    records = _same(p, spec, [f"id-{i}" for i in range(ROWS)], rng.integers(0, 3, ROWS), scores, _frame(rng, ROWS))
    values = {kv.value.string_value for r in records for kv in LogRecord.FromString(r).attributes
              if kv.key == a.ML_PREDICTION_VALUE}
    assert values == {"a", "b", "c"}  # class indices sent as the class names on both paths
    unknown = np.r_[rng.integers(0, 3, ROWS - 1), 3]  # an index outside the classes: the generic path drops it
    assert len(_same(p, spec, IDS.new_batch(ROWS), unknown, scores, None, fast_taken=False)) == ROWS - 1


def test_odd_feature_values_are_capped_and_counted_like_the_generic_path() -> None:
    rng = np.random.default_rng(7)
    p = export_queue()
    spec = _spec()
    n = 12
    frame = pd.DataFrame({
        "dbl": [np.nan, np.inf, -np.inf, 1e308, -0.0, 5e-324, 1.0, 2.0, np.nan, 3.0, 4.0, 5.0],
        "obj": [None, "x" * 5000, 2**70, -(2**70), 1.5, float("nan"), True, object(), b"raw", "ok", 3, "é"],
        "big": np.array([2**64 - 1] * 6 + [1] * 6, dtype=np.uint64),
        "nullable": pd.array([1, None] * 6, dtype="Int64"),
        "when": pd.date_range("2024-01-01", periods=n),
        "cat": pd.Categorical(["u", "v"] * 6),
    })
    records = _same(p, spec, IDS.new_batch(n), None, rng.random((n, 2)), frame)
    first = LogRecord.FromString(records[0])
    keys = [kv.key for kv in first.attributes]
    assert a.ML_FEATURE_PREFIX + "dbl" not in keys  # NaN dropped
    assert p.converter.normalizer.truncated  # NaN/inf, too long, wrong types counted


def test_events_link_the_span_like_the_generic_path() -> None:
    p = export_queue()
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        records = _same(p, _spec(), IDS.new_batch(5), None, np.random.default_rng(1).random((5, 2)), None,
                        context=get_current())
    ctx = span.get_span_context()
    rec = LogRecord.FromString(records[0])
    assert (rec.trace_id, rec.span_id, rec.flags) == (ctx.trace_id.to_bytes(16, "big"),
                                                      ctx.span_id.to_bytes(8, "big"), int(ctx.trace_flags))


def test_class_overflow_counts_like_the_generic_path() -> None:
    p = export_queue()
    spec = _spec("multiclass", [f"c{i}" for i in range(150)])
    rng = np.random.default_rng(3)
    _same(p, spec, IDS.new_batch(400), None, rng.random((400, 150)), None)


Case = Callable[[np.random.Generator], tuple[Any, ...]]
FALLBACK_CASES: dict[str, tuple[str, Case]] = {
    "nan scores": ("binary", lambda r: (None, np.array([[np.nan, 1.0]] * 8), None)),
    "fewer score rows than ids": ("binary", lambda r: (None, r.random((5, 2)), None)),
    "wrong score width": ("binary", lambda r: (None, r.random((8, 3)), None)),
    "float predictions": ("binary", lambda r: (r.random(8), r.random((8, 2)), None)),
    "dict features": ("binary", lambda r: (None, r.random((8, 2)), {"x": r.random(8)})),
    "regression": ("regression", lambda r: (r.random(8), None, None)),
    "per-row segments": ("binary", lambda r: (None, r.random((8, 2)), None, {"s": np.array(["a", "b"] * 4)})),
    "labels": ("binary", lambda r: (None, r.random((8, 2)), None, None, ["yes"] * 8)),
    "long feature name": ("binary", lambda r: (None, r.random((8, 2)), pd.DataFrame({"k" * 300: r.random(8)}))),
}


@pytest.mark.parametrize("name", sorted(FALLBACK_CASES))
def test_unsupported_batches_take_the_generic_path(name: str) -> None:
    task, make = FALLBACK_CASES[name]
    p = export_queue()
    spec = _spec(task, None if task == "regression" else ["no", "yes"]) if task != "regression" else \
        otel_ml.ModelMonitor("m", version="2", task="regression")._spec
    args = make(np.random.default_rng(0))
    _same(p, spec, IDS.new_batch(8), *args, fast_taken=False)


def test_single_path_caches_give_the_same_bytes_and_counts_every_time() -> None:
    """The per-feature caches (double prefixes, whole categorical entries) change nothing on the wire, and a capped
    (too long) feature name is counted on every event, not only the first."""
    p = export_queue()
    spec = _spec()
    long_name = "k" * 300
    features = {"amount": 1.5, "country": "FR", "flag": True, "n": 1, "big": 2**70, long_name: 2.0, "s": "x" * 70}
    records = []
    for _ in range(3):
        item = p.converter.prediction(spec, 5, "same-id", "yes", 0.7, dict(features), None, MISSING, None, None)
        assert item is not None
        records.append(item[1])
    assert records[0] == records[1] == records[2]
    attrs = {kv.key: kv.value for kv in LogRecord.FromString(records[0]).attributes}
    assert attrs[a.ML_FEATURE_PREFIX + "flag"].bool_value is True
    assert attrs[a.ML_FEATURE_PREFIX + "n"].int_value == 1
    assert attrs[a.ML_FEATURE_PREFIX + "big"].double_value == float(2**70)
    assert p.converter.normalizer.truncated[("m", "too_long")] == 3


def test_bulk_folded_durations_equal_per_value_recording() -> None:
    from otel_ml.instrumentation.aggregate import Aggregator, _Histogram
    from otel_ml.semconv import metrics as m

    agg = Aggregator()
    values = [0.0, 1e-4, 0.005, 0.005, 0.25, 3.0, 1e9, *np.random.default_rng(2).random(50).tolist()]
    reference = _Histogram(m.DURATION_BUCKETS_S)
    for v in values:
        agg.record_duration(("m", "1"), v)
        reference.record(v)
    agg.record_duration(("m", "1"), 0.5, "ValueError")  # errors are recorded at once, in their own series
    agg.fold_scores()
    h = agg.duration[(("m", "1"), None)]
    assert (h.counts, h.count, h.min, h.max) == (reference.counts, reference.count, reference.min, reference.max)
    assert h.sum == pytest.approx(reference.sum)
    assert agg.duration[(("m", "1"), "ValueError")].count == 1


@pytest.mark.parametrize("task", ["binary", "multiclass"])
@pytest.mark.parametrize("score", [0.93, 0.0, -2.5, 1e300])
def test_class_and_score_shortcut_equals_the_normalizer(task: str, score: float) -> None:
    p = export_queue()
    spec = _spec(task, ["no", "yes", "maybe"] if task == "multiclass" else None)
    item = p.converter.prediction(spec, 9, "pid-1", "yes", score, {"x": 1.0}, None, MISSING, None, None)
    assert item is not None
    pairs: list[tuple[str, Any]] = []
    assert p.converter.normalizer.prediction(spec, "yes", score, pairs) == (True, "yes", score)
    encoded: list[Any] = []
    p.converter.normalizer.features(spec, {"x": 1.0}, encoded, p.converter.feature_encoder)
    assert item == p.sink.event(spec, False, 9, "pid-1", pairs, None, encoded)
    attrs = {kv.key: kv.value for kv in LogRecord.FromString(item[1]).attributes}
    assert attrs[a.ML_PREDICTION_VALUE].string_value == "yes"
    assert attrs[a.ML_PREDICTION_SCORE].double_value == score
