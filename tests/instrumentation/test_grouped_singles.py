"""Single predictions drained together are encoded column-wise, byte for byte the per-record path.

Each case hands one run of queued single-prediction records (``log_prediction`` and ``@monitor.instrument``
records, as the worker drains them) to the converter's ``singles`` twice on the same export queue (grouped encoder
on, then off) and compares the encoded ``LogRecord`` bytes, truncation counts, drops and aggregated metrics (durations
included). Odd runs must fall back to the per-record path and be capped/counted exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from opentelemetry.context import get_current
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import set_span_in_context

import otel_ml
from otel_ml.instrumentation.export_queue import ExportQueue
from otel_ml.instrumentation.records import MISSING, CallRecord, PredictionRecord
from otel_ml.instrumentation.state import STATE
from otel_ml.instrumentation.transport import InMemoryTransport
from tests.instrumentation.equivalence import counts, export_queue, reset_counts

Rec = PredictionRecord | CallRecord


def _run(p: ExportQueue, fast: bool, run: list[Rec]) -> tuple[list[Any], tuple[Any, ...]]:
    reset_counts(p)
    encoder = p.converter.batch_encoder
    if not fast:
        p.converter.batch_encoder = None
    try:
        items = p.converter.singles(list(run))
    finally:
        p.converter.batch_encoder = encoder
    return items, counts(p)


def _same(p: ExportQueue, run: list[Rec], grouped: bool = True) -> list[bytes]:
    real = p.converter.batch_encoder
    assert real is not None
    taken: list[bool] = []
    original = real.encode_singles

    def spy(*args: Any) -> Any:
        result = original(*args)
        taken.append(result is not None)
        return result

    real.encode_singles = spy  # type: ignore[method-assign,assignment]
    try:
        fast_items, fast_state = _run(p, True, run)
    finally:
        del real.encode_singles
    generic_items, generic_state = _run(p, False, run)
    assert any(taken) is grouped
    assert fast_items == generic_items
    assert fast_state == generic_state
    for _, rec in fast_items:
        LogRecord.FromString(rec)
    return [rec for _, rec in fast_items]


def _monitor(task: str = "binary", classes: list[str] | None = None, **kw: Any) -> otel_ml.ModelMonitor:
    return otel_ml.ModelMonitor("m", version="2", task=task, classes=classes or ["no", "yes"], **kw)


def _pred(spec: Any, i: int, prediction: Any = "yes", score: Any = 0.5, features: Any = None, segments: Any = None,
          label: Any = MISSING, context: Any = None, duration_ns: Any = None, pid: Any = None,
          time_ns: Any = None) -> Rec:
    return PredictionRecord(spec, 1_700_000_000_000_000_000 + i * 1000 if time_ns is None else time_ns,
                            f"id-{i}" if pid is None else pid, prediction, score, features, segments, label, context,
                            duration_ns)


def _features(rng: np.random.Generator) -> dict[str, Any]:
    return {"amount": float(rng.normal() * 1e6), "country": str(rng.choice(["FR", "DE", "ÜS"])),
            "new_user": bool(rng.random() > 0.5), "items": int(rng.integers(-5, 9)), "age": float(rng.random())}


@pytest.mark.parametrize("seed", range(3))
def test_random_runs_match_the_per_record_path(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = export_queue()
    spec = _monitor()._spec
    run = [_pred(spec, i, str(rng.choice(["no", "yes"])), float(rng.random()), _features(rng),
                 duration_ns=int(rng.integers(0, 10**9)) if i % 3 else None) for i in range(40)]
    records = _same(p, run)
    assert len(records) == 40
    multi = _monitor("multiclass", ["a", "b", "c"], features=["amount", "items"])._spec  # a feature selection
    _same(p, [_pred(multi, i, "abc"[i % 3], float(rng.random()), _features(rng)) for i in range(9)])
    _same(p, [_pred(spec, i) for i in range(5)])  # no features
    _same(p, [_pred(spec, i, features={}) for i in range(5)])


def test_odd_values_inside_a_run_are_capped_and_counted_like_the_per_record_path() -> None:
    p = export_queue()
    spec = _monitor()._spec
    values = [float("nan"), float("inf"), 1e308, -0.0, 5e-324, 2.0]
    strings = ["x" * 5000, "ok", "é", "", "y" * 64, "z"]
    ints = [2**70, -(2**70), 0, 2**63 - 1, -(2**63), 7]
    run = [_pred(spec, i, features={"d": v, "s": s, "n": n, "b": i % 2 == 0}, pid="p" * (i * 50), duration_ns=i)
           for i, (v, s, n) in enumerate(zip(values, strings, ints, strict=True))]
    run.append(_pred(spec, 99, "\ud800", features={"d": 1.0, "s": "\udfff", "n": 1, "b": True}, pid="p\ud800"))
    records = _same(p, run)
    assert p.converter.normalizer.truncated  # NaN/inf and the long string counted (on both paths, same counts)
    assert len(records) == len(run)


def test_events_link_their_own_spans_like_the_per_record_path() -> None:
    p = export_queue()
    spec = _monitor()._spec
    tracer = TracerProvider().get_tracer("t")
    contexts = [set_span_in_context(tracer.start_span(f"s{i}")) for i in range(3)]
    # events of one request share its Context object; outside any span the context is the empty one
    run = [_pred(spec, i, context=contexts[i // 2] if i != 3 else get_current()) for i in range(6)]
    records = _same(p, run)
    ids = [LogRecord.FromString(r).span_id for r in records]
    assert ids[0] == ids[1] != ids[2] and ids[3] == b""
    same = _same(p, [_pred(spec, i, context=contexts[0]) for i in range(4)])  # one span for the whole run
    assert {LogRecord.FromString(r).span_id for r in same} == {ids[0]}


def test_decorated_calls_group_with_log_prediction_calls() -> None:
    p = export_queue()
    mon = _monitor()

    @mon.instrument
    def predict(features: dict[str, Any]) -> tuple[str, float]:
        return ("yes", 0.75)

    call = predict.__otel_ml_call__  # type: ignore[attr-defined]
    rng = np.random.default_rng(5)
    run: list[Rec] = []
    for i in range(8):
        f = _features(rng)
        if i % 2:
            run.append(CallRecord(call, 1_700_000_000_000_000_000 + i, f"c-{i}", (f,), {}, ("yes", 0.75), None,
                                  1000 * i))
        else:
            run.append(_pred(mon._spec, i, features=f, duration_ns=500))
    assert len(_same(p, run)) == 8


def test_a_failing_extractor_drops_and_counts_only_its_call() -> None:
    p = export_queue()
    mon = _monitor()

    def boom(args: Any, kwargs: Any, result: Any) -> Any:
        raise RuntimeError("extractor bug")

    @mon.instrument(features=boom)
    def predict(x: Any) -> tuple[str, float]:
        return ("yes", 0.75)

    call = predict.__otel_ml_call__  # type: ignore[attr-defined]
    run = [_pred(mon._spec, 0), CallRecord(call, 5, "c", (1,), {}, ("yes", 0.75), None, 10), _pred(mon._spec, 2)]
    assert len(_same(p, run)) == 2
    assert sum(p.metrics.dropped.values()) == 1


Make = Callable[[Any], list[Rec]]
FALLBACK_CASES: dict[str, Make] = {
    "nan score": lambda s: [_pred(s, 0), _pred(s, 1, score=float("nan"))],
    "int score": lambda s: [_pred(s, 0), _pred(s, 1, score=1)],
    "long class": lambda s: [_pred(s, 0), _pred(s, 1, prediction="c" * 5000)],
    "int class": lambda s: [_pred(s, 0), _pred(s, 1, prediction=1)],
    "long id": lambda s: [_pred(s, 0), _pred(s, 1, pid="i" * 300)],
    "int id": lambda s: [_pred(s, 0), _pred(s, 1, pid=12)],
    "label": lambda s: [_pred(s, 0), _pred(s, 1, label="yes")],
    "segments": lambda s: [_pred(s, 0, segments={"r": "eu"}), _pred(s, 1, segments={"r": "eu"})],
    "different keys": lambda s: [_pred(s, 0, features={"a": 1.0}), _pred(s, 1, features={"b": 1.0})],
    "key order": lambda s: [_pred(s, 0, features={"a": 1.0, "b": 2}), _pred(s, 1, features={"b": 2, "a": 1.0})],
    "mixed column": lambda s: [_pred(s, 0, features={"a": 1.0}), _pred(s, 1, features={"a": 1})],
    "bool and int": lambda s: [_pred(s, 0, features={"a": True}), _pred(s, 1, features={"a": 1})],
    "odd value": lambda s: [_pred(s, 0, features={"a": None}), _pred(s, 1, features={"a": [1, 2]})],
    "list features": lambda s: [_pred(s, 0, features=[1.0, 2.0]), _pred(s, 1, features=[1.0, 2.0])],
    "some without features": lambda s: [_pred(s, 0, features={"a": 1.0}), _pred(s, 1)],
    "long feature name": lambda s: [_pred(s, 0, features={"k" * 300: 1.0}), _pred(s, 1, features={"k" * 300: 2.0})],
    "negative time": lambda s: [_pred(s, 0), _pred(s, 1, time_ns=-1)],
    "float duration": lambda s: [_pred(s, 0), _pred(s, 1, duration_ns=1.5)],
}


@pytest.mark.parametrize("name", sorted(FALLBACK_CASES))
def test_odd_runs_take_the_per_record_path(name: str) -> None:
    p = export_queue()
    _same(p, FALLBACK_CASES[name](_monitor()._spec), grouped=False)


def test_regression_and_sampled_monitors_take_the_per_record_path() -> None:
    p = export_queue()
    reg = otel_ml.ModelMonitor("r", version="1", task="regression")._spec
    _same(p, [_pred(reg, i, prediction=1.5, score=None) for i in range(3)], grouped=False)
    sampled = _monitor(feature_sample_rate=0.5)._spec
    p.converter.normalizer._random.seed(1)
    fast_items, _ = _run(p, True, [_pred(sampled, i, features={"a": 1.0}) for i in range(4)])
    assert len(fast_items) == 4


def test_drain_groups_runs_of_one_model_and_keeps_the_queue_order() -> None:
    """Through the real drain: interleaved models, a batch and labels in the queue; the exported requests hold the
    same records in the same order as with the grouped encoder off."""
    outputs = []
    for fast in (True, False):
        otel_ml.configure(endpoint="http://127.0.0.1:9", transport=(t := InMemoryTransport()), schedule_delay=3600,
                          metric_interval=3600, batch_size=7)
        p = STATE.queue
        assert isinstance(p, ExportQueue)
        if not fast:
            p.converter.batch_encoder = None
        a, b = _monitor(), otel_ml.ModelMonitor("other", version="1", task="multiclass", classes=["x", "y", "z"])
        for i in range(30):
            mon = a if i % 10 < 6 else b
            mon.log_prediction("yes" if mon is a else "z", scores=0.25, features={"f": float(i), "c": "k"},
                               prediction_id=f"id-{i}", timestamp=1_700_000_000_000_000_000 + i)
            if i == 12:
                a.log_predictions(np.array(["no", "yes"]), scores=np.array([0.1, 0.9]), prediction_ids=["b1", "b2"],
                                  timestamp=5)
                a.log_label("id-3", "yes", timestamp=6)
        otel_ml.force_flush(10)
        logs = [ExportLogsServiceRequest.FromString(body) for path, body in t.requests if "logs" in path]
        outputs.append([r.SerializeToString() for req in logs for rl in req.resource_logs for sl in rl.scope_logs
                        for r in sl.log_records])
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) == 33
