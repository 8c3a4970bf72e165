"""SQLite backend specifics: file modes, schema versions, quarantine of damaged tombstones and aggregates, a damaged
page (real SQLite files, real corruption written with a separate connection or into the file)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from otel_ml.processor.store.base import StorageError
from otel_ml.processor.store.sqlite import SCHEMA_VERSION, SqliteJoinStore, StoreFormatError
from otel_ml.semconv.attributes import StoreErrorReason
from tests.processor.conftest import label_row, pred_row

DAY = 86_400.0
T0 = 1_700_000_000.0


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sql(path: Path, statement: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path, isolation_level=None)
    try:
        return db.execute(statement, args).fetchall()
    finally:
        db.close()


def test_store_files_and_directories_are_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask: SQLite alone would create 0644 files
    try:
        path = tmp_path / "a" / "b" / "store.db"
        store = SqliteJoinStore(path, DAY, 100)
        store.ingest([pred_row("p", T0)], [], T0)
        store.commit({})
        assert _mode(tmp_path / "a") == 0o700 and _mode(tmp_path / "a" / "b") == 0o700
        for name in ("store.db", "store.db-wal", "store.db-shm"):
            assert _mode(path.parent / name) == 0o600, name
        store.close()
    finally:
        os.umask(old)


def test_loose_existing_files_are_fixed_and_a_shared_directory_is_warned_about(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store.db"
    SqliteJoinStore(path, DAY, 100).close()
    os.chmod(tmp_path, 0o755)
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING, logger="otel_ml.processor.store.sqlite"):
        store = SqliteJoinStore(path, DAY, 100)
    assert _mode(path) == 0o600
    assert _mode(tmp_path) == 0o755  # not ours to change
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "made 0600" in messages and "chmod 700" in messages
    store.close()


def test_old_schema_is_upgraded_and_a_newer_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SqliteJoinStore(path, DAY, 100).close()
    _sql(path, "UPDATE meta SET value = '3' WHERE key = 'schema'")
    SqliteJoinStore(path, DAY, 100).close()
    assert _sql(path, "SELECT value FROM meta WHERE key = 'schema'") == [(str(SCHEMA_VERSION),)]
    _sql(path, "UPDATE meta SET value = ? WHERE key = 'schema'", str(SCHEMA_VERSION + 1))
    with pytest.raises(StoreFormatError, match="newer otel-ml"):
        SqliteJoinStore(path, DAY, 100)


def test_damaged_gone_tombstone_and_wrong_shaped_rows_are_quarantined(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteJoinStore(path, DAY, 1)
    store.ingest([pred_row("gone", T0), pred_row("short", T0 + 1)], [], T0 + 1)  # "gone" evicted
    store.ingest([pred_row("typed", T0 + 2)], [], T0 + 2)  # "short" evicted, "typed" pending
    store.commit({})
    store.close()
    import marshal
    _sql(path, "UPDATE pending SET row = X'51' WHERE k = ?", "m\x1fgone")  # an unknown tombstone byte
    _sql(path, "UPDATE pending SET row = ? WHERE k = ?", marshal.dumps(("m", "v1", 3), 4), "m\x1ftyped")
    store = SqliteJoinStore(path, DAY, 10)
    before = store.pending()
    r = store.ingest([pred_row("gone", T0 + 3), pred_row("typed", T0 + 3)], [], T0 + 3)
    assert r.new_predictions == [0, 1] and r.duplicates == 0  # both keys accept records again
    reasons = {q.key.split("\x1f")[1]: q.reason for q in store.take_quarantined()}
    assert set(reasons) == {"gone", "typed"} and "unknown tombstone" in reasons["gone"]
    assert "columns" in reasons["typed"]
    store.commit({})
    assert store.pending() == before - 1 + 2
    rows = _sql(path, "SELECT k, raw, reason FROM quarantine ORDER BY rowid")
    assert [(k, raw) for k, raw, _ in rows] == [("m\x1fgone", b"Q"), ("m\x1ftyped", marshal.dumps(("m", "v1", 3), 4))]
    store.close()


def test_wrong_typed_value_in_a_row_is_quarantined(tmp_path: Path) -> None:
    import marshal
    path = tmp_path / "store.db"
    store = SqliteJoinStore(path, DAY, 10)
    store.ingest([pred_row("p", T0)], [], T0)
    store.commit({})
    row = list(pred_row("p", T0)[2:])
    row[0] = 42  # the model name as an int: decodes, but is not a row
    _sql(path, "UPDATE pending SET row = ? WHERE k = ?", marshal.dumps(tuple(row), 4), "m\x1fp")
    r = store.ingest([], [label_row("p", T0 + 1)], T0 + 1)
    assert not r.joined and [q.reason for q in store.take_quarantined()] == ["column model holds a int"]
    store.commit({})
    store.close()


def test_damaged_aggregate_is_quarantined_at_load(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = SqliteJoinStore(path, DAY, 10)
    store.commit({("ml.predictions", (("ml.model.name", "m"),)): 5.0, ("ml.joins", ()): 2.0})
    store.close()
    _sql(path, "UPDATE aggregates SET attrs = 'not json' WHERE metric = 'ml.predictions'")
    store = SqliteJoinStore(path, DAY, 10)
    assert store.load_aggregates() == {("ml.joins", ()): 2.0}
    assert [q.key for q in store.take_quarantined()] == ["aggregate:'ml.predictions'"]
    store.commit({})
    assert store.load_aggregates() == {("ml.joins", ()): 2.0}
    assert _sql(path, "SELECT count(*) FROM quarantine") == [(1,)]
    store.close()


def test_damaged_page_is_a_corrupt_storage_error(tmp_path: Path) -> None:
    """Garbage over a b-tree page of the pending table (in the file, store closed): refused at open as ``corrupt``."""
    path = tmp_path / "store.db"
    store = SqliteJoinStore(path, DAY, 100_000)
    store.ingest([pred_row(f"p{i}", T0, cls="x" * 100) for i in range(3000)], [], T0)
    store.commit({})
    store.close()
    page_size = _sql(path, "PRAGMA page_size")[0][0]
    assert isinstance(page_size, int)
    pages = path.stat().st_size // page_size
    with open(path, "r+b") as f:  # the last pages hold pending rows (the table grew last)
        f.seek((pages - 2) * page_size)
        f.write(b"\xa5" * page_size)
    with pytest.raises(StorageError) as info:
        SqliteJoinStore(path, DAY, 100_000)
    assert info.value.kind == StoreErrorReason.CORRUPT


def test_committed_counts_describe_the_file_through_every_kind_of_step(tmp_path: Path) -> None:
    """``meta.counts`` (read back when the store reopens after a failure, instead of a table scan) equals a count
    of the table after commits, rollbacks, evictions, expiry, gone tombstones and a quarantine."""
    import random
    path = tmp_path / "store.db"
    store = SqliteJoinStore(path, DAY, 40)
    rng = random.Random(5)
    for step in range(60):
        t = T0 + step * 600
        preds = [pred_row(f"p{rng.randrange(120)}", t, label=rng.choice([None, None, "1"])) for _ in range(8)]
        labels = [label_row(f"p{rng.randrange(120)}", t) for _ in range(6)]
        store.ingest(preds, labels, t)
        if step % 7 == 3:
            store.rollback()
            continue
        if step % 11 == 5:
            store.expire(t)
        if step == 30:
            store.commit({})
            key = _sql(path, "SELECT k FROM pending WHERE length(row) > 1 LIMIT 1")[0][0]
            _sql(path, "UPDATE pending SET row = X'ff00' WHERE k = ?", key)
            store.ingest([], [label_row(str(key).split("\x1f")[1], t)], t)
            assert len(store.take_quarantined()) == 1
        store.commit({})
        live, total = _sql(path, "SELECT sum(length(row) > 1), count(*) FROM pending")[0]
        assert _sql(path, "SELECT value FROM meta WHERE key = 'counts'") == [(f"{live},{int(total) - int(live)}",)]
        assert store.pending() == live
    store.close()
