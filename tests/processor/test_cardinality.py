"""Cardinality caps that junk cannot poison: admission, idle slots, reference pins, restarts, the series limit.

And the self-metric race: counters bumped from other threads while the writer commits are never lost.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from otel_ml.processor import config as cfg
from otel_ml.processor.aggregates import Capper
from otel_ml.processor.decode import decode_request
from otel_ml.processor.step import Processor
from otel_ml.processor.store import MemoryJoinStore, SqliteJoinStore
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import OverflowReason
from tests.processor.conftest import label_event, prediction_event
from tests.support import otlp_events as ev


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _processor(tmp_path: Path | None = None, clock: Clock | None = None, **metrics: Any) -> Processor:
    config = cfg.from_mapping({"metrics": {"otlp": None, **metrics}})
    store = (SqliteJoinStore(tmp_path / "s.db", config.store.label_window, config.store.max_pending)
             if tmp_path else MemoryJoinStore(config.store.label_window, config.store.max_pending))
    return Processor(config, store, (), clock or Clock())


def _send(p: Processor, records: list[Any]) -> None:
    p.process([decode_request(ev.request(records), p.clock(), p.wants_extras)])


def _values(p: Processor, key: str, metric: m.MetricSpec = m.PREDICTIONS) -> dict[str, float]:
    out: dict[str, float] = {}
    for attrs, v in p.aggregates.snapshot(metric.name):
        d = dict(attrs)
        out[d[key]] = out.get(d[key], 0.0) + v
    return out


def _overflow(p: Processor, reason: str, key: str | None = None) -> float:
    return sum(v for attrs, v in p.aggregates.snapshot(m.PROCESSOR_ATTRIBUTE_OVERFLOW.name)
               if dict(attrs)[a.ML_REASON] == reason and (key is None or dict(attrs)[a.ML_ATTRIBUTE_KEY] == key))


def test_junk_models_cannot_keep_a_real_model_out() -> None:
    """250 one-off junk model names, then a real model: it gets its own series after a few requests."""
    p = _processor(cardinality_limit=10, cardinality_admission=5)
    _send(p, [prediction_event(f"j{i}", model=f"junk-{i}") for i in range(250)])
    models = _values(p, a.ML_MODEL_NAME)
    assert len(models) == 6 and models[a.OVERFLOW_VALUE] == 245  # 5 first-come slots, the rest folded
    assert _overflow(p, OverflowReason.ADMISSION, a.ML_MODEL_NAME) == 245
    for r in range(5):  # a real model recurs: admitted on its 5th sighting
        _send(p, [prediction_event(f"r{r}-{i}", model="real") for i in range(10)])
    assert _values(p, a.ML_MODEL_NAME)["real"] == 10  # the first 4 requests were folded, then its own series
    assert _values(p, a.ML_MODEL_NAME)[a.OVERFLOW_VALUE] == 245 + 40


def test_reference_values_are_always_admitted() -> None:
    p = _processor(cardinality_limit=4, cardinality_admission=1)
    _send(p, [prediction_event(f"j{i}", model="fraud", task="multiclass", value=f"junk{i}") for i in range(10)])
    p.capper.pin("fraud", {a.ML_CLASS: ["legit", "fraud"], a.ML_MODEL_VERSION: ["v1"]})
    _send(p, [prediction_event("k", model="fraud", task="multiclass", value="legit"),
              prediction_event("l", model="fraud", task="multiclass", value="fraud")])
    classes = _values(p, a.ML_CLASS)
    assert classes["legit"] == 1 and classes["fraud"] == 1 and classes[a.OVERFLOW_VALUE] == 6
    assert p.capper.pinned("", a.ML_MODEL_NAME) == {"fraud"}


def test_idle_values_give_up_their_slot_and_their_series(tmp_path: Path) -> None:
    clock = Clock()
    p = _processor(tmp_path, clock, cardinality_limit=2, cardinality_admission=1, cardinality_idle="1h")
    _send(p, [prediction_event("a", task="multiclass", value="old1"),
              prediction_event("b", task="multiclass", value="old2")])
    clock.t += 1800
    _send(p, [prediction_event("c", task="multiclass", value="new")])  # full, nothing idle long enough
    assert _values(p, a.ML_CLASS) == {"old1": 1, "old2": 1, a.OVERFLOW_VALUE: 1}
    clock.t += 1800
    _send(p, [prediction_event("d", task="multiclass", value="old2")])  # old2 seen again, old1 idle for 1h
    clock.t += 60
    _send(p, [prediction_event("e", task="multiclass", value="new")])
    assert _values(p, a.ML_CLASS) == {"old2": 2, "new": 1, a.OVERFLOW_VALUE: 1}  # old1's series are gone
    p.close()
    q = _processor(tmp_path, clock, cardinality_limit=2, cardinality_admission=1, cardinality_idle="1h")
    assert _values(q, a.ML_CLASS) == {"old2": 2, "new": 1, a.OVERFLOW_VALUE: 1}  # deleted from the store too
    q.close()


def test_restart_keeps_last_seen_times_so_junk_ages_out(tmp_path: Path) -> None:
    clock = Clock()
    kw = {"cardinality_limit": 2, "cardinality_admission": 1, "cardinality_idle": "1h"}
    p = _processor(tmp_path, clock, **kw)
    _send(p, [prediction_event("a", task="multiclass", value="junk1"),
              prediction_event("b", task="multiclass", value="junk2")])
    p.close()
    for _ in range(3):  # restarts every 40 min: the junk's last-seen times are not reset by them
        clock.t += 2400
        p = _processor(tmp_path, clock, **kw)
        p.close()
    p = _processor(tmp_path, clock, **kw)
    _send(p, [prediction_event("c", task="multiclass", value="real")])
    assert "real" in _values(p, a.ML_CLASS)
    p.close()


def test_series_limit_folds_new_combinations() -> None:
    p = _processor(cardinality_limit=100, cardinality_admission=1, series_limit=100)
    recs = [prediction_event(f"p{c}-{s}", task="multiclass", value=f"c{c}", **{"ml.segment.s": f"s{s}"})
            for c in range(12) for s in range(12)]
    _send(p, recs)
    points = p.aggregates.snapshot(m.PREDICTIONS.name)
    assert len(points) == 101  # 100 series, then the folded one
    assert sum(v for _, v in points) == 144  # nothing lost
    folded = dict(next(attrs for attrs, _ in points if dict(attrs)[a.ML_CLASS] == a.OVERFLOW_VALUE))
    assert folded[a.ML_MODEL_NAME] == folded[a.ML_SEGMENT] == a.OVERFLOW_VALUE
    assert _overflow(p, OverflowReason.SERIES, m.PREDICTIONS.name) == 44


def test_capper_memory_is_bounded_by_its_caps() -> None:
    capper = Capper(limit=50, admission=3)
    now = 0.0
    for i in range(100_000):
        capper.admit("m", a.ML_CLASS, f"junk-{i}-" + "x" * 200, now)
    assert len(capper.slots("m", a.ML_CLASS)) == 25  # first-come half; the rest wait as bounded candidates
    assert capper.approx_bytes() < 300 * 50 * (1 + 4) * 2


def test_admission_counts_sightings_not_records() -> None:
    capper = Capper(limit=2, admission=3)
    assert capper.admit("", a.ML_MODEL_NAME, "first", 0.0) is None
    assert capper.admit("", a.ML_MODEL_NAME, "second", 0.0) == OverflowReason.ADMISSION
    assert capper.admit("", a.ML_MODEL_NAME, "second", 1.0) == OverflowReason.ADMISSION
    assert capper.admit("", a.ML_MODEL_NAME, "second", 2.0) is None
    assert capper.admit("", a.ML_MODEL_NAME, "third", 3.0) == OverflowReason.LIMIT


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_refusals_counted_from_other_threads_while_committing_are_never_lost(backend: str, tmp_path: Path) -> None:
    """N bumps from 8 threads during 200 commits: the mirror and the store both end at exactly N."""
    p = _processor(tmp_path if backend == "sqlite" else None)
    n_threads, per_thread = 8, 2_000
    start = threading.Barrier(n_threads + 1)

    def refuse() -> None:
        start.wait()
        for _ in range(per_thread):
            p.aggregates.add_uncommitted(m.PROCESSOR_REQUESTS_REFUSED.name, (), 1.0)

    threads = [threading.Thread(target=refuse) for _ in range(n_threads)]
    for t in threads:
        t.start()
    start.wait()
    i = 0
    while any(t.is_alive() for t in threads) or i < 200:
        _send(p, [prediction_event(f"x{i}"), label_event(f"x{i}")])
        i += 1
    for t in threads:
        t.join()
    p.tick()  # the last bumps are persisted by the next commit
    total = n_threads * per_thread
    assert p.aggregates.value(m.PROCESSOR_REQUESTS_REFUSED.name) == total
    assert p.store.load_aggregates()[(m.PROCESSOR_REQUESTS_REFUSED.name, ())] == total
    assert p.aggregates.value(m.PROCESSOR_JOINS.name) == i
    p.close()
