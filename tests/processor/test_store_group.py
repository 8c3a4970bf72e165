"""``ingest_many`` (one lookup and one write per group of requests) and the SQLite store's fixed-size statements."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otel_ml.processor.records import L_STR, P_STR, Row
from otel_ml.processor.store import BaseJoinStore, IngestResult, SqliteJoinStore
from otel_ml.processor.store.sqlite import _CHUNK, _insert_sizes
from tests.processor.conftest import label_row, pred_row
from tests.processor.store_backends import BACKENDS

DAY = 86400.0
T0 = 1_700_000_000.0
Batch = tuple[list[Row], list[Row]]
Factory = Callable[..., BaseJoinStore]


@pytest.fixture(params=sorted(BACKENDS))
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    backend = BACKENDS[request.param](tmp_path, request)

    def make(name: str = "store", max_pending: int = 100_000) -> BaseJoinStore:
        return backend.open(7 * DAY, max_pending, name=name)

    yield make
    backend.close_all()


def _view(r: IngestResult) -> tuple[object, ...]:
    return r.new_predictions, r.new_labels, sorted(r.joined, key=lambda row: row[0]), r.duplicates, r.evicted


def _random_batches(rng: random.Random, n: int, t: float) -> list[Batch]:
    ids = [f"id{i}" for i in range(25)]
    out: list[Batch] = []
    for _ in range(n):
        preds = [pred_row(rng.choice(ids), t, cls=rng.choice("xy"), label=rng.choice([None, None, "x"]))
                 for _ in range(rng.randrange(6))]
        labels = [label_row(rng.choice(ids), t, value=rng.choice("xy")) for _ in range(rng.randrange(6))]
        out.append((preds, labels))
    return out


def test_group_gives_what_sequential_ingests_give(make_store: Factory) -> None:
    rng = random.Random(7)
    one_by_one, grouped = make_store("a"), make_store("b")
    for step in range(40):
        t = T0 + step
        batches = _random_batches(rng, rng.randrange(1, 5), t)
        expected = [one_by_one.ingest(p, lb, t) for p, lb in batches]
        got = grouped.ingest_many(batches, t)
        assert [_view(r) for r in got] == [_view(r) for r in expected]
        one_by_one.commit({})
        grouped.commit({})
        assert grouped.pending() == one_by_one.pending()
    probe = [label_row(f"id{i}", T0 + 99) for i in range(25)] + [pred_row(f"id{i}", T0 + 99) for i in range(25)]
    assert _view(grouped.ingest(probe[25:], probe[:25], T0 + 99)) == _view(
        one_by_one.ingest(probe[25:], probe[:25], T0 + 99))


def test_label_overtakes_prediction_inside_one_group(make_store: Factory) -> None:
    store = make_store()
    first, second = store.ingest_many([([], [label_row("a", T0, value="y")]), ([pred_row("a", T0, cls="x")], [])], T0)
    assert first.new_labels == [0] and not first.joined
    assert second.new_predictions == [0] and [(r[P_STR], r[L_STR]) for r in second.joined] == [("x", "y")]
    store.commit({})
    assert store.pending() == 0
    again = store.ingest_many([([pred_row("a", T0)], [label_row("a", T0)])], T0 + 1)[0]
    assert again.duplicates == 2 and not again.joined


def test_duplicates_inside_one_group(make_store: Factory) -> None:
    store = make_store()
    results = store.ingest_many([([pred_row("a", T0, cls="x")], []), ([pred_row("a", T0, cls="y")], []),
                                 ([], [label_row("a", T0)]), ([], [label_row("a", T0)])], T0)
    assert [r.duplicates for r in results] == [0, 1, 0, 1]
    assert [len(r.joined) for r in results] == [0, 0, 1, 0] and results[2].joined[0][P_STR] == "x"
    store.commit({})
    assert store.pending() == 0


def test_pair_and_pending_label_in_one_group(make_store: Factory) -> None:
    store = make_store()
    first, second = store.ingest_many([([], [label_row("a", T0, value="y")]),
                                       ([pred_row("a", T0, cls="x", label="z")], [])], T0)
    assert first.new_labels == [0] and [(r[P_STR], r[L_STR]) for r in second.joined] == [("x", "z")]
    store.commit({})
    assert store.pending() == 0


def test_eviction_runs_once_after_the_group(make_store: Factory) -> None:
    store = make_store(max_pending=3)
    results = store.ingest_many([([pred_row("a", T0), pred_row("b", T0)], []),
                                 ([pred_row("c", T0), pred_row("d", T0)], [])], T0)
    assert not results[0].evicted and [r[0] for r in results[1].evicted] == [pred_row("a", T0)[0]]
    assert store.pending() == 3


def test_empty_group_and_rollback(make_store: Factory) -> None:
    store = make_store()
    assert store.ingest_many([], T0) == []
    assert _view(store.ingest_many([([], [])], T0)[0]) == _view(IngestResult())
    store.ingest_many([([pred_row("a", T0)], []), ([], [label_row("b", T0)])], T0)
    store.rollback()
    assert store.pending() == 0
    assert not store.ingest([], [label_row("a", T0)], T0).joined


@pytest.mark.parametrize("n", [0, 1, _CHUNK - 1, _CHUNK, _CHUNK + 1, 2 * _CHUNK + 3])
def test_sqlite_statement_chunk_edges(tmp_path: Path, n: int) -> None:
    store = SqliteJoinStore(tmp_path / "s.db", 7 * DAY, 100_000)
    try:
        preds = [pred_row(f"p{i}", T0, cls=str(i)) for i in range(n)]
        store.ingest(preds, [], T0)  # n multi-row inserts
        store.commit({})
        labels = [label_row(f"p{i}", T0 + 1, value=str(i)) for i in range(n)]
        res = store.ingest([], labels, T0 + 1)  # n keys looked up, n tombstone updates
        assert sorted((r[P_STR], r[L_STR]) for r in res.joined) == sorted((str(i), str(i)) for i in range(n))
        pairs = [pred_row(f"q{i}", T0, label="1") for i in range(n)]
        assert len(store.ingest(pairs, [], T0 + 1).joined) == n  # n new tombstones
        store.commit({})
        assert store.pending() == 0
        again = store.ingest(preds + pairs, labels, T0 + 2)
        assert again.duplicates == 3 * n and not again.joined
        reopened_count = store._db.execute("SELECT count(*), count(row) FROM pending").fetchone()
        assert reopened_count == (2 * n, 0)
    finally:
        store.close()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, _CHUNK - 1, _CHUNK, _CHUNK + 1, 5 * _CHUNK + 77])
def test_insert_sizes_cover_every_row_with_few_statements(n: int) -> None:
    sizes = list(_insert_sizes(n))
    assert sum(sizes) == n
    assert all(s > 0 and s <= _CHUNK and s & (s - 1) == 0 for s in sizes)
    assert len(set(sizes)) <= _CHUNK.bit_length()
