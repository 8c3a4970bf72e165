"""One conformance suite for every JoinStore backend (the contract in otel_ml/processor/store/base.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_ml.processor.records import L_STR, P_STR, is_prediction
from otel_ml.processor.store import BaseJoinStore, SqliteJoinStore
from tests.processor.conftest import label_row, pred_row
from tests.processor.store_backends import BACKENDS, CORRUPTIBLE, COUNTED_ONCE, StoreBackend

DAY = 86400.0
T0 = 1_700_000_000.0

Factory = Callable[..., BaseJoinStore]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    b = BACKENDS[request.param](tmp_path, request)
    yield b
    b.close_all()


@pytest.fixture
def make_store(backend: StoreBackend) -> Factory:
    return backend.open


def test_prediction_then_label_joins(make_store: Factory) -> None:
    store = make_store()
    r1 = store.ingest([pred_row("a", T0, cls="x")], [], T0)
    assert r1.new_predictions == [0] and not r1.joined and store.pending() == 1
    r2 = store.ingest([], [label_row("a", T0 + 5, value="y")], T0 + 5)
    assert r2.new_labels == [0]
    assert len(r2.joined) == 1 and r2.joined[0][P_STR] == "x" and r2.joined[0][L_STR] == "y"
    store.commit({})
    assert store.pending() == 0


def test_label_before_prediction(make_store: Factory) -> None:
    store = make_store()
    assert not store.ingest([], [label_row("a", T0, value="y")], T0).joined
    assert store.pending() == 1
    r = store.ingest([pred_row("a", T0 + 1, cls="x")], [], T0 + 1)
    assert len(r.joined) == 1 and r.joined[0][P_STR] == "x" and r.joined[0][L_STR] == "y"
    assert store.pending() == 0


def test_pair_joins_at_once(make_store: Factory) -> None:
    store = make_store()
    r = store.ingest([pred_row("a", T0, label="1")], [], T0)
    assert len(r.joined) == 1 and store.pending() == 0


def test_same_batch_prediction_and_label(make_store: Factory) -> None:
    store = make_store()
    r = store.ingest([pred_row("a", T0)], [label_row("a", T0)], T0)
    assert len(r.joined) == 1 and store.pending() == 0


def test_duplicates_are_idempotent(make_store: Factory) -> None:
    store = make_store()
    store.ingest([pred_row("a", T0), pred_row("a", T0)], [], T0)
    assert store.pending() == 1
    r = store.ingest([pred_row("a", T0)], [label_row("a", T0), label_row("a", T0)], T0)
    assert r.new_predictions == [] and r.new_labels == [0] and len(r.joined) == 1 and r.duplicates == 2
    # after the join: the same prediction or label again changes nothing (a re-sent request)
    r = store.ingest([pred_row("a", T0)], [label_row("a", T0)], T0 + 10)
    assert (r.new_predictions, r.new_labels, r.joined, r.duplicates) == ([], [], [], 2)
    assert store.pending() == 0
    # duplicate pending labels
    store.ingest([], [label_row("b", T0)], T0)
    r = store.ingest([], [label_row("b", T0)], T0)
    assert r.new_labels == [] and store.pending() == 1


def test_same_id_different_models_are_distinct(make_store: Factory) -> None:
    store = make_store()
    store.ingest([pred_row("a", T0, model="m1"), pred_row("a", T0, model="m2")], [], T0)
    r = store.ingest([], [label_row("a", T0, model="m2")], T0)
    assert len(r.joined) == 1 and store.pending() == 1


def test_ttl_expires_predictions_and_orphans_labels(make_store: Factory) -> None:
    store = make_store(label_window=7 * DAY)
    store.ingest([pred_row("old", T0)], [label_row("orphan", T0)], T0)
    store.ingest([pred_row("new", T0 + 6 * DAY)], [], T0 + 6 * DAY)
    assert store.expire(T0 + 6.9 * DAY) == []
    expired = store.expire(T0 + 7.1 * DAY)
    assert sorted((is_prediction(r), r[0].split("\x1f")[1]) for r in expired) == [(False, "orphan"), (True, "old")]
    assert store.pending() == 1
    # a label arriving after its prediction expired waits as a new pending label (never joined)
    r = store.ingest([], [label_row("old", T0 + 7.2 * DAY)], T0 + 7.2 * DAY)
    assert not r.joined and r.new_labels == [0]


def test_tombstones_expire_with_the_window(make_store: Factory) -> None:
    store = make_store(label_window=DAY)
    store.ingest([pred_row("a", T0, label="1")], [], T0)
    assert store.ingest([pred_row("a", T0)], [], T0 + 10).duplicates == 1
    store.expire(T0 + 2 * DAY)
    assert store.ingest([pred_row("a", T0)], [], T0 + 2 * DAY).new_predictions == [0]


def test_bounded_size_evicts_oldest(make_store: Factory) -> None:
    store = make_store(max_pending=3)
    store.ingest([pred_row(f"p{i}", T0 + i) for i in range(3)], [], T0 + 3)
    r = store.ingest([pred_row("p3", T0 + 4), pred_row("p4", T0 + 4)], [], T0 + 4)
    assert [x[0].split("\x1f")[1] for x in r.evicted] == ["p0", "p1"]
    assert store.pending() == 3
    # the evicted prediction's label no longer joins
    assert not store.ingest([], [label_row("p0", T0 + 5)], T0 + 5).joined


def test_rollback_discards_the_step(make_store: Factory) -> None:
    store = make_store()
    store.ingest([pred_row("a", T0)], [], T0)
    store.commit({("x", ()): 1.0})
    store.ingest([pred_row("b", T0)], [label_row("a", T0)], T0)
    store.rollback()
    assert store.pending() == 1
    r = store.ingest([], [label_row("a", T0)], T0)
    assert len(r.joined) == 1
    assert store.load_aggregates() == {("x", ()): 1.0}


def test_aggregates_round_trip(make_store: Factory) -> None:
    store = make_store()
    totals = {("ml.predictions", (("ml.class", "é,\"x"), ("ml.model.name", "m"))): 3.0, ("ml.joins", ()): 2.5}
    store.commit(totals)
    assert store.load_aggregates() == totals


def test_delete_aggregates_in_the_transaction(make_store: Factory) -> None:
    store = make_store()
    keep, gone = ("ml.joins", ()), ("ml.predictions", (("ml.class", "junk"), ("ml.model.name", "m")))
    store.commit({keep: 1.0, gone: 2.0})
    store.delete_aggregates([gone, ("ml.absent", ())])
    store.rollback()
    assert store.load_aggregates() == {keep: 1.0, gone: 2.0}
    store.delete_aggregates([gone])
    store.commit({keep: 3.0})
    assert store.load_aggregates() == {keep: 3.0}


def test_oldest_pending_skips_joined_and_survives_rollback(make_store: Factory) -> None:
    store = make_store()
    store.ingest([pred_row(f"p{i}", T0 + i) for i in range(5)], [], T0 + 5)
    store.commit({})
    store.ingest([], [label_row("p0", T0 + 6), label_row("p1", T0 + 6)], T0 + 6)
    store.commit({})
    assert store.oldest_pending_arrival() == T0 + 2
    store.ingest([], [label_row("p2", T0 + 7)], T0 + 7)
    assert store.oldest_pending_arrival() == T0 + 3
    store.rollback()
    assert store.oldest_pending_arrival() == T0 + 2 and store.pending() == 3


def test_expiry_in_many_chunks_with_tombstones(make_store: Factory) -> None:
    store = make_store(label_window=DAY, max_pending=10_000)
    store.ingest([pred_row(f"pair{i}", T0, label="1") for i in range(2500)], [], T0)
    store.ingest([pred_row(f"wait{i}", T0 + 1) for i in range(1200)], [], T0 + 1)
    store.ingest([pred_row("fresh", T0 + DAY)], [], T0 + DAY)
    store.commit({})
    expired = store.expire(T0 + DAY + 2)
    assert len(expired) == 1200 and store.pending() == 1
    store.commit({})
    # tombstones expired with the window: the same pair is new again
    assert store.ingest([pred_row("pair7", T0, label="1")], [], T0 + DAY + 3).new_predictions == [0]


def test_eviction_skips_joined(make_store: Factory) -> None:
    store = make_store(max_pending=2)
    store.ingest([pred_row("a", T0), pred_row("b", T0 + 1)], [label_row("a", T0 + 1)], T0 + 1)
    r = store.ingest([pred_row("c", T0 + 2), pred_row("d", T0 + 3)], [], T0 + 3)
    assert [x[0].split("\x1f")[1] for x in r.evicted] == ["b"]
    assert store.ingest([pred_row("a", T0)], [], T0 + 4).duplicates == 1  # the tombstone survived eviction


def test_state_blobs_commit_and_rollback(make_store: Factory) -> None:
    s = make_store()
    s.put_state("a", b"\x00\x01")
    s.rollback()
    assert s.load_state() == {}
    s.put_state("a", b"\x00\x01")
    s.put_state("b", b"x")
    s.put_state("a", b"\x02")
    s.commit({})
    assert s.load_state() == {"a": b"\x02", "b": b"x"}


# --- counted once, also after a record left the store (gone tombstones) --------------------------------------------
@pytest.fixture(params=COUNTED_ONCE)
def counted_once(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    b = BACKENDS[request.param](tmp_path, request)
    yield b.open
    b.close_all()


@pytest.fixture(params=[n for n in COUNTED_ONCE if BACKENDS[n].durable])
def durable_counted_once(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    b = BACKENDS[request.param](tmp_path, request)
    yield b
    b.close_all()


def _pid(row: tuple[object, ...]) -> str:
    return str(row[0]).split("\x1f")[1]


def test_resent_records_after_eviction_are_duplicates(counted_once: Factory) -> None:
    store = counted_once(max_pending=2)
    store.ingest([pred_row("p0", T0), pred_row("p1", T0 + 1), pred_row("p2", T0 + 2)], [], T0 + 2)
    store.commit({})
    assert store.pending() == 2
    # the evicted prediction re-sent (a sender's retry): a duplicate, not a second prediction
    r = store.ingest([pred_row("p0", T0)], [], T0 + 3)
    assert (r.new_predictions, r.duplicates, store.pending()) == ([], 1, 2)
    # its label, first time: new but late (it can never join: counted orphaned at once), not left pending
    r = store.ingest([], [label_row("p0", T0 + 4)], T0 + 4)
    assert r.new_labels == [0] and not r.joined and [_pid(x) for x in r.late] == ["p0"] and store.pending() == 2
    # the same label re-sent: a duplicate (before: a second pending label, a second orphan)
    r = store.ingest([], [label_row("p0", T0 + 5)], T0 + 5)
    assert (r.new_labels, r.late, r.duplicates) == ([], [], 1)
    store.commit({})


def test_label_after_its_prediction_expired_is_late_once(counted_once: Factory) -> None:
    store = counted_once(label_window=DAY)
    store.ingest([pred_row("a", T0)], [], T0)
    assert [_pid(x) for x in store.expire(T0 + 2 * DAY)] == ["a"]
    r = store.ingest([], [label_row("a", T0 + 2 * DAY)], T0 + 2 * DAY)
    assert r.new_labels == [0] and [_pid(x) for x in r.late] == ["a"] and store.pending() == 0
    for again in ([], [label_row("a", T0)]), ([pred_row("a", T0)], []):  # label or prediction re-sent
        r = store.ingest(*again, T0 + 2.5 * DAY)
        assert (r.new_predictions, r.new_labels, r.late, r.duplicates) == ([], [], [], 1)
    assert store.expire(T0 + 2.9 * DAY) == []


def test_prediction_after_its_label_expired_is_late_once(counted_once: Factory) -> None:
    store = counted_once(label_window=DAY)
    store.ingest([], [label_row("a", T0)], T0)
    expired = store.expire(T0 + 2 * DAY)
    assert [(_pid(x), is_prediction(x)) for x in expired] == [("a", False)]
    r = store.ingest([pred_row("a", T0 + 2 * DAY)], [], T0 + 2 * DAY)
    assert r.new_predictions == [0] and not r.joined and [_pid(x) for x in r.late] == ["a"]
    assert store.pending() == 0
    r = store.ingest([pred_row("a", T0 + 2 * DAY)], [label_row("a", T0)], T0 + 2 * DAY)
    assert r.duplicates == 2 and not r.late


def test_pair_after_its_label_left_joins_with_its_own_label(counted_once: Factory) -> None:
    store = counted_once(label_window=DAY)
    store.ingest([], [label_row("a", T0, value="y")], T0)
    store.expire(T0 + 2 * DAY)
    r = store.ingest([pred_row("a", T0, cls="x", label="z")], [], T0 + 2 * DAY)
    assert [(x[P_STR], x[L_STR]) for x in r.joined] == [("x", "z")] and not r.late
    assert store.ingest([pred_row("a", T0, label="z")], [], T0 + 2 * DAY).duplicates == 1


def test_gone_tombstones_expire_a_window_after_leaving(counted_once: Factory) -> None:
    store = counted_once(label_window=DAY)
    store.ingest([pred_row("a", T0)], [], T0)
    store.expire(T0 + 1.5 * DAY)  # "a" leaves at 1.5 days: its tombstone lives until 2.5 days
    assert store.ingest([pred_row("a", T0)], [], T0 + 2.4 * DAY).duplicates == 1
    store.expire(T0 + 2.6 * DAY)
    r = store.ingest([pred_row("a", T0)], [], T0 + 2.6 * DAY)
    assert r.new_predictions == [0] and not r.late


def test_tombstones_are_bounded_oldest_first(counted_once: Factory) -> None:
    store = counted_once(max_pending=3, label_window=100 * DAY)
    for i in range(10):  # each new prediction evicts the oldest: 7 gone tombstones
        store.ingest([pred_row(f"p{i}", T0 + i)], [], T0 + i)
    store.ingest([pred_row("pair", T0 + 10, label="1")], [], T0 + 10)  # and a join tombstone
    store.commit({})
    assert store.expire(T0 + 11) == []  # nothing expired, but the tombstones are cut to max_pending
    store.commit({})
    assert store.ingest([pred_row("p0", T0)], [], T0 + 12).new_predictions == [0]  # forgotten: oldest first
    assert store.ingest([], [], T0 + 12).duplicates == 0
    r = store.ingest([pred_row("p6", T0), pred_row("pair", T0, label="1")], [], T0 + 12)
    assert r.duplicates == 2  # the newest tombstones are kept


def test_eviction_rolled_back_leaves_no_tombstone(counted_once: Factory) -> None:
    store = counted_once(max_pending=1)
    store.ingest([pred_row("a", T0)], [], T0)
    store.commit({})
    assert [_pid(x) for x in store.ingest([pred_row("b", T0 + 1)], [], T0 + 1).evicted] == ["a"]
    store.rollback()
    assert store.pending() == 1
    r = store.ingest([], [label_row("a", T0 + 2)], T0 + 2)
    assert len(r.joined) == 1 and not r.late  # "a" is pending again, not gone


@pytest.fixture(params=[n for n in BACKENDS if BACKENDS[n].durable])
def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    b = BACKENDS[request.param](tmp_path, request)
    yield b
    b.close_all()


def test_durable_backends_survive_a_restart(durable: StoreBackend) -> None:
    backend = durable
    store = backend.open(max_pending=100)
    store.ingest([pred_row("p0", T0), pred_row("p1", T0 + 1), pred_row("pair", T0, label="1")], [label_row("x", T0)],
                 T0 + 2)
    store.commit({("k", ()): 3.0})
    store.ingest([pred_row("uncommitted", T0)], [], T0 + 3)
    again = backend.reopen(store)
    assert again.pending() == 3 and again.load_aggregates() == {("k", ()): 3.0}
    r = again.ingest([pred_row("p0", T0), pred_row("uncommitted", T0), pred_row("pair", T0, label="1")],
                     [label_row("p1", T0)], T0 + 4)
    assert (r.duplicates, r.new_predictions, r.new_labels) == (2, [1], [0])
    assert [_pid(x) for x in r.joined] == ["p1"] and again.pending() == 3


def test_gone_tombstones_survive_a_restart(durable_counted_once: StoreBackend) -> None:
    backend = durable_counted_once
    store = backend.open(max_pending=2)
    store.ingest([pred_row("p0", T0), pred_row("p1", T0 + 1), pred_row("p2", T0 + 2)], [label_row("x", T0)], T0 + 2)
    store.commit({})
    again = backend.reopen(store)  # p0 and the label "x" (the oldest) were evicted
    r = again.ingest([pred_row("p0", T0)], [label_row("x", T0), label_row("p1", T0)], T0 + 4)
    assert (r.duplicates, r.new_labels, r.late) == (2, [1], [])
    assert [_pid(x) for x in r.joined] == ["p1"]


def test_rollback_never_raises_and_is_idempotent(make_store: Factory) -> None:
    store = make_store()
    store.rollback()
    store.ingest([pred_row("a", T0)], [], T0)
    store.rollback()
    store.rollback()
    store.commit({})
    assert store.pending() == 0 and store.take_errors() == {} and store.take_quarantined() == []


def test_no_write_outside_a_transaction(backend: StoreBackend) -> None:
    store = backend.open(max_pending=5, label_window=DAY)
    for i in range(20):
        store.ingest([pred_row(f"p{i}", T0 + i, label="1" if i % 3 == 0 else None)], [label_row(f"p{i - 1}", T0 + i)],
                     T0 + i)
        store.put_state("s", b"x")
        store.commit({("n", ()): float(i)})
    store.expire(T0 + 3 * DAY)
    store.commit({})
    store.oldest_pending_arrival()
    assert backend.writes_outside_transactions(store) == []


# --- quarantine of records that cannot be decoded ------------------------------------------------------------------
@pytest.fixture(params=CORRUPTIBLE)
def corruptible(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreBackend]:
    b = BACKENDS[request.param](tmp_path, request)
    yield b
    b.close_all()


def _key(pid: str, model: str = "m") -> str:
    return f"{model}\x1f{pid}"


def test_corrupted_row_is_quarantined_and_its_key_accepts_records(corruptible: StoreBackend) -> None:
    store = corruptible.open()
    store.ingest([pred_row("bad", T0), pred_row("good", T0)], [], T0)
    store.commit({})
    corruptible.corrupt(store, _key("bad"))
    r = store.ingest([], [label_row("bad", T0 + 1), label_row("good", T0 + 1)], T0 + 1)
    assert [_pid(x) for x in r.joined] == ["good"] and r.new_labels == [0, 1]  # the label waits (its prediction lost)
    quarantined = store.take_quarantined()
    assert [q.key for q in quarantined] == [_key("bad")] and quarantined[0].reason
    store.commit({})
    assert store.take_quarantined() == [] and store.pending() == 1
    r = store.ingest([pred_row("bad", T0 + 2)], [], T0 + 2)  # the key is not blocked: the new record joins
    assert len(r.joined) == 1 and store.pending() == 0
    store.commit({})
    assert corruptible.writes_outside_transactions(store) == []


def test_corrupted_row_does_not_stop_the_expiry_sweep(corruptible: StoreBackend) -> None:
    store = corruptible.open(label_window=DAY)
    store.ingest([pred_row(f"p{i}", T0 + i) for i in range(8)], [], T0 + 8)
    store.commit({})
    corruptible.corrupt(store, _key("p3"))
    expired = store.expire(T0 + 2 * DAY)
    assert sorted(_pid(x) for x in expired) == [f"p{i}" for i in range(8) if i != 3]
    assert [q.key for q in store.take_quarantined()] == [_key("p3")]
    store.commit({})
    assert store.pending() == 0 and store.oldest_pending_arrival() is None


def test_corrupted_row_met_by_eviction_is_quarantined(corruptible: StoreBackend) -> None:
    store = corruptible.open(max_pending=3)
    store.ingest([pred_row(f"p{i}", T0 + i) for i in range(3)], [], T0 + 3)
    store.commit({})
    corruptible.corrupt(store, _key("p0"))
    r = store.ingest([pred_row("p3", T0 + 4), pred_row("p4", T0 + 4)], [], T0 + 4)
    assert [_pid(x) for x in r.evicted] in (["p1"], ["p1", "p2"])
    assert [q.key for q in store.take_quarantined()] == [_key("p0")]
    store.commit({})
    assert store.pending() <= 3


def test_quarantine_rolls_back_with_the_step(corruptible: StoreBackend) -> None:
    store = corruptible.open()
    store.ingest([pred_row("bad", T0)], [], T0)
    store.commit({})
    corruptible.corrupt(store, _key("bad"))
    store.ingest([], [label_row("bad", T0)], T0)
    assert len(store.take_quarantined()) == 1
    store.rollback()  # the step failed: the row is back in place, found (and reported) again next time
    store.ingest([], [label_row("bad", T0)], T0)
    assert len(store.take_quarantined()) == 1
    store.commit({})


def test_sqlite_restart_durability(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SqliteJoinStore(path, 7 * DAY, 100)
    store.ingest([pred_row("a", T0), pred_row("b", T0, label="1")], [label_row("c", T0)], T0)
    store.commit({("k", ()): 7.0})
    store.ingest([pred_row("uncommitted", T0)], [], T0)
    store._db.close()  # no commit: the open transaction is lost, as in a crash (kill -9: test_crash_restart.py)
    again = SqliteJoinStore(path, 7 * DAY, 100)
    assert again.pending() == 2
    assert again.load_aggregates() == {("k", ()): 7.0}
    r = again.ingest([pred_row("c", T0), pred_row("b", T0)], [label_row("a", T0)], T0)
    assert len(r.joined) == 2 and r.duplicates == 1
    again.close()
