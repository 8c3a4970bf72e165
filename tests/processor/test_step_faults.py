"""The processor step and writer around storage faults, without a network: a real SQLite store on a real full tmpfs
or under a real lock, real OTLP requests; counters compared with the truth of what was sent and acknowledged."""

from __future__ import annotations

import logging
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from otel_ml.processor import config as cfg
from otel_ml.processor.aggregates import Aggregates
from otel_ml.processor.decode import Decoded, decode_request
from otel_ml.processor.step import Processor, StepResult
from otel_ml.processor.store import MemoryJoinStore, SqliteJoinStore, open_store
from otel_ml.processor.store.base import StorageError
from otel_ml.processor.writer import StoreUnavailable, Writer
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import StoreErrorReason
from tests.processor.conftest import label_event, prediction_event
from tests.support import otlp_events as ev
from tests.support.faultfs import Tmpfs

T = 1_700_000_000.0


def _request(lo: int, hi: int, labels_of: range = range(0), cls_pad: int = 100) -> Decoded:
    recs: list[Any] = [prediction_event(f"p{i}", task="multiclass", value=f"{i % 3}{'x' * cls_pad}")
                       for i in range(lo, hi)]
    recs += [label_event(f"p{i}", value=f"{i % 3}{'x' * cls_pad}") for i in labels_of]
    return decode_request(ev.request(recs), T, False)


def _value(p: Processor, spec: m.MetricSpec, **attrs: str) -> float:
    return sum(v for at, v in p.aggregates.snapshot(spec.name) if all(dict(at).get(k) == x for k, x in attrs.items()))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Any:
    fs = Tmpfs(tmp_path / "fs", 6 * 2**20)
    yield fs
    fs.umount()


def test_full_disk_fails_the_step_whole_and_counters_equal_the_truth_after_recovery(tmpfs: Tmpfs) -> None:
    config = cfg.from_mapping({})
    store = SqliteJoinStore(tmpfs.path / "store.db", config.store.label_window, config.store.max_pending)
    p = Processor(config, store, (), lambda: T)
    requests = [_request(i * 1000, (i + 1) * 1000, range((i - 1) * 1000, i * 1000) if i else range(0))
                for i in range(8)]
    acked: set[int] = set()
    p.process([requests[0]])
    acked.add(0)
    tmpfs.fill()
    failures = 0
    for i in range(1, 8):
        try:
            p.process([requests[i]])
            acked.add(i)
        except StorageError as exc:
            assert exc.kind == StoreErrorReason.FULL
            failures += 1
    assert failures, "the full disk failed no step"
    assert _value(p, m.PROCESSOR_STORE_ERRORS, **{a.ML_REASON: "full"}) >= 1  # visible before any commit works
    assert _value(p, m.PREDICTIONS) == 1000 * len(acked)  # the mirror shows only what was committed
    tmpfs.free()
    for i in range(8):  # the sender re-sends everything not acknowledged (in its own order)
        if i not in acked:
            for _ in range(200):
                try:
                    p.process([requests[i]])
                    break
                except StorageError:
                    threading.Event().wait(0.05)
            acked.add(i)
    assert _value(p, m.PREDICTIONS) == 8000
    assert _value(p, m.LABELED_PREDICTIONS) == 7000 == _value(p, m.PROCESSOR_JOINS)
    assert _value(p, m.CORRECT_PREDICTIONS) == 7000
    assert store.pending() == 1000
    persisted = store.load_aggregates()
    p.close()
    reopened = Processor(config, SqliteJoinStore(tmpfs.path / "store.db", config.store.label_window, 10**7),
                         (), lambda: T)
    assert _value(reopened, m.PREDICTIONS) == 8000
    # counted once per failed storage operation (steps refused while the connection waits to reopen touch no
    # storage and are not counted), persisted by the first commit that worked
    errors = _value(reopened, m.PROCESSOR_STORE_ERRORS, **{a.ML_REASON: "full"})
    assert 1 <= errors <= failures and errors == _value(reopened, m.PROCESSOR_STORE_ERRORS)
    assert {k: v for k, v in persisted.items() if k[0] != m.PROCESSOR_STORE_ERRORS.name} == {
        k: v for k, v in reopened.store.load_aggregates().items() if k[0] != m.PROCESSOR_STORE_ERRORS.name}
    reopened.close()


def test_writer_answers_the_whole_group_unavailable_at_once_under_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    config = cfg.from_mapping({"store": {"path": str(path), "lock_timeout": "300ms"}})
    store = open_store(config.store)
    assert isinstance(store, SqliteJoinStore) and store.lock_timeout == 0.3
    p = Processor(config, store, (), lambda: T)
    calls: list[int] = []
    process = p.process

    def counting(items: Any) -> list[StepResult]:
        calls.append(len(items))
        return process(items)
    p.process = counting  # type: ignore[method-assign]
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    writer = Writer(p, tick_interval=3600)
    futures: list[Future[StepResult]] = [writer.submit(_request(i * 10, i * 10 + 10)) for i in range(5)]
    writer.start()
    for fut in futures:
        with pytest.raises(StoreUnavailable, match="locked"):
            fut.result(10)
    assert calls == [5], calls  # one attempt for the group: no per-request retries against a broken store
    other.execute("ROLLBACK")
    other.close()
    again = [writer.submit(_request(i * 10, i * 10 + 10)) for i in range(5)]
    assert all(f.result(10).rejected == 0 for f in again)
    writer.stop()
    assert _value(p, m.PREDICTIONS) == 50
    assert _value(p, m.PROCESSOR_STORE_ERRORS, **{a.ML_REASON: "locked"}) == 1
    p.close()


def test_quarantined_row_is_counted_and_logged_once_with_its_key(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    config = cfg.from_mapping({"store": {"label_window": "1h"}})
    path = tmp_path / "store.db"
    clock = [T]
    p = Processor(config, SqliteJoinStore(path, 3600.0, 1000), (), lambda: clock[0])
    p.process([_request(0, 10)])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("UPDATE pending SET row = X'ff00' WHERE k IN (?, ?)", ("m\x1fp3", "m\x1fp7"))
    other.close()
    with caplog.at_level(logging.ERROR, logger="otel_ml.processor.step"):
        p.process([_request(10, 10, labels_of=range(0, 5))])  # meets p3
        clock[0] += 7200
        p.tick()  # the sweep meets p7 and expires the others
        p.tick()
    assert _value(p, m.PROCESSOR_STORE_QUARANTINED) == 2
    assert _value(p, m.LABELED_PREDICTIONS) == 4  # p0..p4 but p3
    assert _value(p, m.EXPIRED_PREDICTIONS) == 4  # p5, p6, p8, p9 (p7 quarantined, not expired)
    assert _value(p, m.ORPHANED_LABELS) == 1  # the label of p3 waited, then expired
    logged = [r.getMessage() for r in caplog.records if "quarantine" in r.getMessage()]
    assert len(logged) == 2 and "p3" in logged[0] and "p7" in logged[1]
    assert p.store.pending() == 0
    p.close()


def test_late_records_after_eviction_count_once() -> None:
    config = cfg.from_mapping({"store": {"max_pending": 2}})
    p = Processor(config, MemoryJoinStore(config.store.label_window, 2), (), lambda: T)
    p.process([_request(0, 3)])  # p0 evicted
    assert _value(p, m.EXPIRED_PREDICTIONS) == 1 and _value(p, m.PROCESSOR_STORE_EVICTED) == 1
    for _ in range(3):  # its label, re-sent twice; the evicted prediction re-sent too
        p.process([_request(0, 1, labels_of=range(0, 1))])
    assert _value(p, m.LABELS) == 1 and _value(p, m.ORPHANED_LABELS) == 1
    assert _value(p, m.PREDICTIONS) == 3 and _value(p, m.EXPIRED_PREDICTIONS) == 1
    p.close()


def test_aggregates_keep_bumps_across_failed_commits_and_resync() -> None:
    agg = Aggregates({("ml.joins", ()): 5.0})
    agg.add_uncommitted("ml.processor.requests.refused", (), 1.0)
    totals, taken = agg.prepare({("ml.joins", ()): 2.0})
    assert totals == {("ml.joins", ()): 7.0, ("ml.processor.requests.refused", ()): 1.0}
    agg.restore(taken)  # the commit failed
    agg.add_uncommitted("ml.processor.requests.refused", (), 1.0)
    totals, taken = agg.prepare({})
    assert totals == {("ml.processor.requests.refused", ()): 2.0}
    agg.add_uncommitted("ml.processor.requests.refused", (), 1.0)  # between prepare and apply
    agg.apply(totals, {})
    assert agg.value("ml.processor.requests.refused") == 3.0  # not overwritten by the older total
    agg.resync({("ml.joins", ()): 9.0, ("ml.processor.requests.refused", ()): 2.0})  # the store's truth
    assert agg.value("ml.joins") == 9.0 and agg.value("ml.processor.requests.refused") == 3.0
    totals, _ = agg.prepare({})
    assert totals == {("ml.processor.requests.refused", ()): 3.0}


def test_row_that_decodes_with_a_wrong_type_is_quarantined_on_the_strict_retry(tmp_path: Path) -> None:
    """A damaged row of the right length (its prediction time a string) passes the hot path's check; the step fails
    on it, the writer runs the request again with every column checked: quarantined, the request acknowledged."""
    import marshal

    from otel_ml.processor.records import P_TS
    config = cfg.from_mapping({})
    path = tmp_path / "store.db"
    p = Processor(config, SqliteJoinStore(path, config.store.label_window, 1000), (), lambda: T)
    p.process([_request(0, 3)])
    other = sqlite3.connect(path, isolation_level=None)
    (blob,) = other.execute("SELECT row FROM pending WHERE k = ?", ("m\x1fp1",)).fetchone()
    values = list(marshal.loads(blob))
    values[P_TS - 2] = "not a time"
    other.execute("UPDATE pending SET row = ? WHERE k = ?", (marshal.dumps(tuple(values), 4), "m\x1fp1"))
    other.close()
    writer = Writer(p, tick_interval=3600).start()
    result = writer.submit(_request(3, 3, labels_of=range(0, 3))).result(10)
    writer.stop()
    assert result.rejected == 0 and not p.store.strict_decoding
    assert _value(p, m.PROCESSOR_STORE_QUARANTINED) == 1
    assert _value(p, m.LABELED_PREDICTIONS) == 2 and p.store.pending() == 1  # p1's label waits (its prediction lost)
    p.close()
