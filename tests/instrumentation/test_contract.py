"""The decorator never hurts inference: exceptions, return identity, signatures, async, methods, threads, fork."""

from __future__ import annotations

import asyncio
import inspect
import os
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

import otel_ml
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from tests.support.otlp_sink import OtlpSink


class ModelFailure(RuntimeError):
    pass


def _monitor() -> otel_ml.ModelMonitor:
    return otel_ml.ModelMonitor("churn", version="3", task="binary", classes=["stay", "leave"])


def _configure(sink: OtlpSink, **kw: Any) -> None:
    otel_ml.configure(endpoint=sink.http_endpoint, schedule_delay=0.05, metric_interval=60, **kw)


def test_exception_type_and_traceback_preserved_and_recorded(sink: OtlpSink) -> None:
    _configure(sink)
    mon = _monitor()

    @mon.instrument
    def predict(features: dict[str, float]) -> str:
        raise ModelFailure("boom")

    with pytest.raises(ModelFailure, match="boom") as info:
        predict({"x": 1.0})
    frames = [f.name for f in traceback.extract_tb(info.value.__traceback__)]
    assert frames[-1] == "predict"  # the user's frame is still the origin
    assert otel_ml.force_flush(10)
    errors = sink.metric_points(m.CLIENT_INFERENCE_ERRORS.name)
    qualname = f"{__name__}.ModelFailure"
    assert [(p[0], p[1].as_int) for p in errors] == [
        ({a.ML_MODEL_NAME: "churn", a.ML_MODEL_VERSION: "3", a.ERROR_TYPE: qualname}, 1)]
    (attrs, hist), = sink.metric_points(m.CLIENT_INFERENCE_DURATION.name)
    assert attrs[a.ERROR_TYPE] == qualname and hist.count == 1
    assert sink.log_records() == []


def test_base_exceptions_pass_through_unrecorded() -> None:
    otel_ml.configure(transport=otel_ml.InMemoryTransport())
    mon = _monitor()

    @mon.instrument
    def predict(x: int) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict(1)


def test_return_identity_and_signature(sink: OtlpSink) -> None:
    _configure(sink)
    mon = _monitor()
    result = {"prediction": "leave", "score": 0.8}

    def predict(features: dict[str, float], *, threshold: float = 0.5) -> dict[str, object]:
        """Docstring kept."""
        return result

    wrapped = mon.instrument(predict)
    assert wrapped({"x": 1.0}, threshold=0.3) is result
    assert inspect.signature(wrapped) == inspect.signature(predict)
    assert wrapped.__name__ == "predict" and wrapped.__doc__ == "Docstring kept."
    assert wrapped.__wrapped__ is predict  # type: ignore[attr-defined]
    assert otel_ml.force_flush(10)
    (rec,) = sink.wait_for_log_records(1)
    assert rec.attributes[a.ML_PREDICTION_VALUE] == "leave"
    assert rec.attributes[a.ML_PREDICTION_SCORE] == 0.8
    assert rec.attributes["ml.feature.x"] == 1.0


def test_async_function(sink: OtlpSink) -> None:
    _configure(sink)
    mon = _monitor()
    marker = ("leave", 0.75)

    @mon.instrument
    async def predict(features: dict[str, float]) -> tuple[str, float]:
        await asyncio.sleep(0.001)
        return marker

    @mon.instrument
    async def failing(features: dict[str, float]) -> None:
        raise ModelFailure("async boom")

    async def main() -> tuple[object, str | None]:
        out = await predict({"x": 2.0})
        return out, otel_ml.current_prediction_id()

    assert inspect.iscoroutinefunction(predict)
    out, pid = asyncio.run(main())
    assert out is marker and pid is not None
    with pytest.raises(ModelFailure):
        asyncio.run(failing({}))
    assert otel_ml.force_flush(10)
    (rec,) = sink.wait_for_log_records(1)
    assert rec.attributes[a.ML_PREDICTION_ID] == pid
    assert sink.metric_points(m.CLIENT_INFERENCE_ERRORS.name)[0][1].as_int == 1


def test_methods_and_sklearn_bound_method(sink: OtlpSink) -> None:
    from sklearn.linear_model import LogisticRegression

    _configure(sink)
    mon = otel_ml.ModelMonitor("iris", version="1", task="multiclass", features=["sl", "sw", "pl", "pw"])

    class Model:
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            x = rng.normal(size=(60, 4))
            y = np.array(["a", "b", "c"] * 20)
            self.clf = LogisticRegression(max_iter=200).fit(x, y)

        @mon.instrument
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return self.clf.predict(rows)

    model = Model()
    rows = np.arange(8, dtype=float).reshape(2, 4)
    out = model.predict(rows)
    ids = otel_ml.current_prediction_ids()
    assert ids is not None and len(ids) == 2
    proba = mon.instrument(model.clf.predict_proba)  # bound method: classes from classes_
    p = proba(rows)
    assert isinstance(p, np.ndarray) and p.shape == (2, 3)
    assert otel_ml.force_flush(10)
    records = sink.wait_for_log_records(4)
    assert [r.attributes[a.ML_PREDICTION_VALUE] for r in records[:2]] == list(out)
    assert [r.attributes[a.ML_PREDICTION_ID] for r in records[:2]] == list(ids)
    assert records[0].attributes["ml.feature.sl"] == 0.0 and records[1].attributes["ml.feature.pw"] == 7.0
    assert a.ML_PREDICTION_CLASSES not in records[0].attributes
    assert records[2].attributes[a.ML_PREDICTION_CLASSES] == ["a", "b", "c"]
    assert records[2].attributes[a.ML_PREDICTION_SCORES] == pytest.approx(list(p[0]))
    assert records[2].attributes[a.ML_PREDICTION_VALUE] == ["a", "b", "c"][int(np.argmax(p[0]))]


def test_extractors(sink: OtlpSink) -> None:
    _configure(sink)
    mon = otel_ml.ModelMonitor("rank", task="regression", segments=["tier"])

    @mon.instrument(features="payload", prediction="value", prediction_id="request_id",
                    segments=lambda args, kwargs, result: {"tier": kwargs.get("tier", "free")})
    def handle(request_id: str, payload: dict[str, float], tier: str = "free") -> dict[str, float]:
        return {"value": payload["x"] * 2}

    handle("req-1", {"x": 1.5}, tier="pro")
    assert otel_ml.current_prediction_id() == "req-1"
    assert otel_ml.force_flush(10)
    (rec,) = sink.wait_for_log_records(1)
    assert rec.attributes == {a.ML_MODEL_NAME: "rank", a.ML_MODEL_VERSION: "", a.ML_TASK: "regression",
                              a.ML_PREDICTION_ID: "req-1", a.ML_PREDICTION_VALUE: 3.0, "ml.feature.x": 1.5,
                              "ml.segment.tier": "pro"}


def test_failing_extractor_never_reaches_caller(sink: OtlpSink) -> None:
    _configure(sink)
    mon = _monitor()

    def bad(args: object, kwargs: object, result: object) -> object:
        raise ValueError("extractor bug")

    @mon.instrument(prediction=bad, prediction_id=bad)
    def predict(x: int) -> int:
        return x

    assert predict(1) == 1
    assert otel_ml.force_flush(10)
    dropped = sink.metric_points(m.CLIENT_EVENTS_DROPPED.name)
    assert [(p[0][a.ML_REASON], p[1].as_int) for p in dropped] == [("invalid", 1)]


def test_thread_pool_hammer(sink: OtlpSink) -> None:
    _configure(sink, queue_size=100_000)
    mon = _monitor()

    @mon.instrument
    def predict(i: int) -> tuple[str, float]:
        return ("leave" if i % 2 else "stay", (i % 100) / 100)

    def work(t: int) -> list[str]:
        ids = []
        for i in range(500):
            result = predict(i)
            assert result[0] in ("stay", "leave")
            pid = otel_ml.current_prediction_id()
            assert pid is not None
            ids.append(pid)
        return ids

    with ThreadPoolExecutor(max_workers=8) as pool:
        all_ids = [pid for ids in pool.map(work, range(8)) for pid in ids]
    assert len(all_ids) == len(set(all_ids)) == 4000
    assert otel_ml.force_flush(30)
    records = sink.wait_for_log_records(4000)
    assert sorted(r.attributes[a.ML_PREDICTION_ID] for r in records) == sorted(all_ids)
    counts = {p[0][a.ML_CLASS]: p[1].as_int for p in sink.metric_points(m.CLIENT_PREDICTIONS.name)}
    assert counts == {"stay": 2000, "leave": 2000}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fork_child_gets_its_own_export_queue(sink: OtlpSink) -> None:
    _configure(sink)
    mon = _monitor()
    parent_id = mon.log_prediction("stay")
    assert otel_ml.force_flush(10)
    sink.wait_for_log_records(1)
    pid = os.fork()
    if pid == 0:  # child: record, flush, exit without running the parent's pytest machinery
        code = 1
        try:
            child_id = mon.log_prediction("leave")
            code = 0 if otel_ml.shutdown(10) and child_id.split("-")[0] != parent_id.split("-")[0] else 2
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    mon.log_prediction("stay")  # the parent keeps working
    assert otel_ml.force_flush(10)
    records = sink.wait_for_log_records(3)
    prefixes = {r.attributes[a.ML_PREDICTION_ID].split("-")[0] for r in records}
    instances = {r.resource["service.instance.id"] for r in records}
    assert len(prefixes) == 2 and len(instances) == 2
    assert sorted(r.attributes[a.ML_PREDICTION_VALUE] for r in records) == ["leave", "stay", "stay"]


def test_exit_flushes_queued_events(sink: OtlpSink) -> None:
    import subprocess
    import textwrap

    script = textwrap.dedent(f"""
        import otel_ml
        otel_ml.configure(endpoint={sink.http_endpoint!r}, schedule_delay=3600)
        mon = otel_ml.ModelMonitor("exit", task="regression")
        for i in range(100):
            mon.log_prediction(float(i))
        # no shutdown(): the atexit hook exports what is queued
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    records = sink.wait_for_log_records(100, timeout=5)
    assert sorted(r.attributes[a.ML_PREDICTION_VALUE] for r in records) == [float(i) for i in range(100)]


def test_single_prediction_from_a_one_row_dataframe(sink: OtlpSink) -> None:
    import pandas as pd

    _configure(sink)
    mon = otel_ml.ModelMonitor("reg", task="regression")

    @mon.instrument
    def predict(frame: pd.DataFrame) -> float:
        return float(frame["x"].iloc[0] * 2)

    assert predict(pd.DataFrame({"x": [1.5], "y": ["a"]})) == 3.0
    assert otel_ml.force_flush(10)
    (rec,) = sink.wait_for_log_records(1)
    assert rec.attributes["ml.feature.x"] == 1.5 and rec.attributes["ml.feature.y"] == "a"
    assert rec.attributes[a.ML_PREDICTION_VALUE] == 3.0
