"""The store's on-disk format: tables, ``meta.schema``, the pinned row encoding and the canaries checked at open
(:func:`check_format`, :class:`StoreFormatError`), and decoding a stored row (:func:`_decode`, :func:`_check_row`).
The migration tool is :mod:`otel_ml.processor.store.migrate`.
"""

from __future__ import annotations

import json
import marshal
import sqlite3
import sys
from typing import Any, Final

from otel_ml.errors import DataError, StoreError
from otel_ml.processor.records import COLUMNS, TASK, Row
from otel_ml.processor.store.base import (
    GONE_LABEL,
    GONE_PREDICTION,
)

MARSHAL_VERSION = 4
"""marshal format of the rows (pinned: the interpreter default may change with Python)."""
ROW_ENCODING = f"marshal:{MARSHAL_VERSION}"
SCHEMA_VERSION: Final = 4
"""``meta.schema`` this module writes and the newest it reads (4: gone tombstones, quarantine table)."""
CANARY: tuple[Any, ...] = ("fraud", "2024-06-01", "binary", "region=eu,tier=gold", "fraud", "", "é€𝄞 ünïcode",
                              "x" * 300, None, 0.0, -0.0, -1.5, 1e308, 5e-324, 1700000000.123456, "1", None)
"""Row-shaped values covering every kind rows hold (repeated "fraud" exercises marshal's back-references)."""
GONE_BLOBS: Final = {GONE_PREDICTION: b"P", GONE_LABEL: b"L"}
"""The ``row`` of a gone tombstone, by marker."""
_GONE_BY_BYTE: Final = {blob[0]: marker for marker, blob in GONE_BLOBS.items()}
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS pending (k TEXT NOT NULL UNIQUE, arrived REAL NOT NULL, row BLOB)",
    "CREATE TABLE IF NOT EXISTS aggregates (metric TEXT NOT NULL, attrs TEXT NOT NULL, value REAL NOT NULL, "
    "PRIMARY KEY (metric, attrs)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS quarantine (k TEXT, raw BLOB, reason TEXT NOT NULL, at REAL NOT NULL)",
    "INSERT OR IGNORE INTO meta VALUES ('schema', '3')",
)
_COUNTS_GET: Final = "SELECT value FROM meta WHERE key = 'counts'"
_COUNTS_SET: Final = "INSERT OR REPLACE INTO meta (key, value) VALUES ('counts', ?)"
_JSON_START = ord("[")
_loads = marshal.loads
_ROW_WIDTH: Final = len(COLUMNS)
_STR = (str,)
_OPT_STR = (str, type(None))
_OPT_NUM = (float, int, type(None))
_COLUMN_TYPES: Final = (_STR, _OPT_NUM, _STR, _OPT_STR, _OPT_STR, _OPT_STR, _OPT_STR, _OPT_NUM, _OPT_NUM, _OPT_STR,
                        _OPT_STR, _OPT_NUM, _OPT_STR, _OPT_NUM, _OPT_STR, _OPT_STR, _OPT_NUM)
"""Types each column of a decoded row may have (``k`` and ``arrived`` come from their own SQLite columns)."""
_GOOD_SHAPES: set[tuple[type, ...]] = set()
"""Column type tuples already validated (a handful repeat: one set lookup per decoded row)."""


class StoreFormatError(StoreError):
    """The store's row encoding cannot be read safely by this Python (see the module docstring)."""

def _python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _dumps(values: tuple[Any, ...]) -> bytes:
    return marshal.dumps(values, MARSHAL_VERSION)


def _parse_counts(row: tuple[Any, ...] | None) -> tuple[int, int] | None:
    """``(pending, tombstones)`` from ``meta.counts`` ("p,t"), None when absent or unreadable (then recounted)."""
    try:
        pending, done = (int(x) for x in str(row[0]).split(",")) if row else (-1, -1)
    except ValueError:
        return None
    return (pending, done) if pending >= 0 and done >= 0 else None


class _Undecodable(DataError):
    """A stored row that does not decode to a row of the expected shape (the message says why)."""


def _check_row(row: Row) -> Row:
    """``row`` if its length and column types are a row's; raises :class:`_Undecodable` otherwise."""
    if len(row) != _ROW_WIDTH:
        raise _Undecodable(f"{len(row)} columns, expected {_ROW_WIDTH}")
    shape = tuple(map(type, row))
    if shape not in _GOOD_SHAPES:
        for name, value, allowed in zip(COLUMNS, row, _COLUMN_TYPES, strict=True):
            if type(value) not in allowed:
                raise _Undecodable(f"column {name} holds a {type(value).__name__}")
        if row[TASK] is None and row[2] is None:
            raise _Undecodable("neither a prediction nor a label")
        if len(_GOOD_SHAPES) < 4096:
            _GOOD_SHAPES.add(shape)
    return row


def _decode(k: str, arrived: float, blob: bytes) -> Row:
    """The row stored as ``blob`` (marshal or, after a migration, JSON); raises :class:`_Undecodable`."""
    try:
        values = json.loads(blob) if blob[:1] == b"[" else _loads(blob)
        row = (k, arrived, *values)
    except Exception as exc:  # marshal raises ValueError/EOFError/TypeError (and worse on garbage): all undecodable
        raise _Undecodable(f"{type(exc).__name__}: {exc}") from exc
    return _check_row(row)


def check_format(db: sqlite3.Connection, path: object) -> None:
    """Refuse a store this Python cannot read identically; register this Python's canary (in the open transaction).

    Raises:
        StoreFormatError: Unknown ``row_encoding`` or newer ``schema``, or a canary of another Python decodes
            differently here.
    """
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('row_encoding', 'schema') "
                           "OR key LIKE 'canary:%'"))
    how = (f"Migrate with the Python that wrote it: stop this processor, run `python -m "
           f"otel_ml.processor.store.migrate {path}` with the previous processor image, then start this one again "
           f"(see otel_ml.processor.store.sqlite)")
    schema = meta.pop("schema", "3")
    if not str(schema).isdigit() or int(schema) > SCHEMA_VERSION:
        raise StoreFormatError(f"join store {path} has schema {schema!r}; this processor reads schema "
                               f"{SCHEMA_VERSION} and older: it was written by a newer otel-ml")
    if int(schema) < SCHEMA_VERSION:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
    encoding = meta.pop("row_encoding", ROW_ENCODING)
    if encoding != ROW_ENCODING:
        raise StoreFormatError(f"join store {path} uses row encoding {encoding!r}; this processor reads "
                               f"{ROW_ENCODING!r}. {how}")
    mine = f"canary:{_python()}"
    for key, hexed in meta.items():
        try:
            ok = key == mine or tuple(_loads(bytes.fromhex(hexed))) == CANARY
        except (ValueError, EOFError, TypeError):
            ok = False
        if not ok and db.execute("SELECT 1 FROM pending WHERE length(row) > 1 LIMIT 1").fetchone() is None:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))  # nothing that Python wrote is left to read
        elif not ok:
            raise StoreFormatError(f"join store {path} has rows written by Python {key.split(':', 1)[1]} whose "
                                   f"marshal encoding Python {_python()} does not read identically. {how}")
    if mine not in meta:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('row_encoding', ?), (?, ?)",
                   (ROW_ENCODING, mine, _dumps(CANARY).hex()))


def _reason(exc: BaseException) -> str:
    """Short reason text of a decoding failure (stored with the quarantined row)."""
    if isinstance(exc, _Undecodable):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:200]
