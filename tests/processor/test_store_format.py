"""The SQLite store's row encoding across Python versions: canaries, refusal, JSON migration (real SQLite files)."""

from __future__ import annotations

import marshal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from otel_ml.processor.store.migrate import to_json
from otel_ml.processor.store.sqlite import CANARY, ROW_ENCODING, SqliteJoinStore, StoreFormatError
from tests.processor.conftest import label_row, pred_row

DAY = 86_400.0
NOW = 1_700_000_000.0
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def _store(path: Path) -> SqliteJoinStore:
    return SqliteJoinStore(path, 7 * DAY, 1000)


def _with_pending(path: Path, n: int = 3) -> list[tuple[object, ...]]:
    s = _store(path)
    rows = [pred_row(f"p{i}", NOW, segment="region=é", cls=f"c{i}") for i in range(n)]
    s.ingest(rows, [], NOW)
    s.commit({("ml.predictions", (("ml.model.name", "m"),)): float(n)})
    s.close()
    return rows


def _meta(path: Path) -> dict[str, str]:
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT key, value FROM meta"))
    finally:
        db.close()


def _set_meta(path: Path, key: str, value: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
    db.close()


def test_canary_registered_and_reopen_reads_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    rows = _with_pending(path)
    meta = _meta(path)
    assert meta["row_encoding"] == ROW_ENCODING
    assert tuple(marshal.loads(bytes.fromhex(meta[f"canary:{PY}"]))) == CANARY
    s = _store(path)
    res = s.ingest([], [label_row("p1", NOW + 5)], NOW + 5)
    assert [r[:12] for r in res.joined] == [rows[1][:12]]
    s.close()


def test_foreign_canary_that_reads_differently_is_refused_with_instructions(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _with_pending(path)
    _set_meta(path, "canary:3.99", marshal.dumps(("not", "the", "canary")).hex())
    with pytest.raises(StoreFormatError, match=r"Python 3\.99.*otel_ml\.processor\.store\.migrate"):
        _store(path)
    _set_meta(path, "canary:3.99", "zz-not-hex")
    with pytest.raises(StoreFormatError):
        _store(path)


def test_foreign_canary_that_reads_identically_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _with_pending(path)
    _set_meta(path, "canary:3.10", marshal.dumps(CANARY, 3).hex())  # an older marshal format, same values
    _store(path).close()


def test_unknown_row_encoding_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _with_pending(path)
    _set_meta(path, "row_encoding", "marshal:9")
    with pytest.raises(StoreFormatError, match="marshal:9"):
        _store(path)


def test_stale_canary_without_pending_rows_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _store(path).close()
    _set_meta(path, "canary:3.99", "00")
    _store(path).close()
    assert "canary:3.99" not in _meta(path)


def test_migration_to_json_keeps_every_row_and_aggregate(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    rows = _with_pending(path, 5)
    _set_meta(path, "canary:3.99", "00")  # the store would now be refused...
    out = subprocess.run([sys.executable, "-m", "otel_ml.processor.store.migrate", str(path)], capture_output=True,
                         text=True, check=True)
    assert "5 pending rows" in out.stdout
    assert to_json(path) == 0  # idempotent
    assert not any(k.startswith("canary:") for k in _meta(path))
    s = _store(path)  # ... and is readable after the migration
    assert s.pending() == 5
    assert s.load_aggregates() == {("ml.predictions", (("ml.model.name", "m"),)): 5.0}
    res = s.ingest([pred_row("p0", NOW)], [label_row(f"p{i}", NOW + 9) for i in range(5)], NOW + 9)
    assert res.duplicates == 1
    assert sorted(r[:12] for r in res.joined) == sorted(r[:12] for r in rows)
    s.commit({})
    expired = s.expire(NOW + 30 * DAY)
    assert expired == []
    s.close()


def test_migrated_rows_expire_intact(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    rows = _with_pending(path, 4)
    to_json(path)
    s = _store(path)
    assert s.expire(NOW + 8 * DAY) == rows
    s.commit({})
    s.close()
