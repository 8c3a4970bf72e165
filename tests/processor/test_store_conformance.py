"""One conformance suite for every JoinStore backend (the contract in otel_ml/processor/store/base.py)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_ml.processor.records import L_STR, P_STR, is_prediction
from otel_ml.processor.store import BaseJoinStore, MemoryJoinStore, SqliteJoinStore
from tests.processor.conftest import label_row, pred_row

DAY = 86400.0
T0 = 1_700_000_000.0

Factory = Callable[..., BaseJoinStore]


_schemas = itertools.count()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[BaseJoinStore] = []
    schema = f"conformance_{next(_schemas)}"  # a fresh, empty store per test in the session's PostgreSQL

    def make(label_window: float = 7 * DAY, max_pending: int = 1000) -> BaseJoinStore:
        store: BaseJoinStore
        if request.param == "memory":
            store = MemoryJoinStore(label_window, max_pending)
        elif request.param == "postgres":
            from otel_ml.processor.store.postgres import PostgresJoinStore

            server = request.getfixturevalue("postgres_server")
            store = PostgresJoinStore(server.dsn(), label_window, max_pending, "test", schema=schema)
        else:
            store = SqliteJoinStore(tmp_path / "store.db", label_window, max_pending)
        opened.append(store)
        return store

    yield make
    for s in opened:
        try:
            s.close()
        except Exception:
            pass


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
