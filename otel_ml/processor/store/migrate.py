"""Rewrite a SQLite join store's pending rows in the version-independent JSON encoding (before a Python upgrade).

Run with the Python (processor image) that wrote the store, the processor stopped::

    python -m otel_ml.processor.store.migrate /var/lib/otel-ml/join.db

Pending rows become JSON arrays (read by every version of :mod:`otel_ml.processor.store.sqlite`), the marshal
canaries are removed, and any Python can then open the store. One transaction: interrupted, it changes nothing.
"""

from __future__ import annotations

import json
import marshal
import sqlite3
import sys
from pathlib import Path

_BATCH = 10_000


def to_json(path: str | Path) -> int:
    """Re-encode every marshal row of the store at ``path`` as JSON; returns how many rows were rewritten."""
    db = sqlite3.connect(str(path), isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        done, last = 0, -1
        while True:
            rows = db.execute("SELECT rowid, row FROM pending WHERE rowid > ? AND length(row) > 1 ORDER BY rowid "
                              "LIMIT ?", (last, _BATCH)).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            update = [(json.dumps(list(marshal.loads(blob)), separators=(",", ":")).encode(), rowid)
                      for rowid, blob in rows if blob[:1] != b"["]
            db.executemany("UPDATE pending SET row = ? WHERE rowid = ?", update)
            done += len(update)
        db.execute("DELETE FROM meta WHERE key LIKE 'canary:%'")
        db.execute("COMMIT")
        return done
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m otel_ml.processor.store.migrate STORE``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m otel_ml.processor.store.migrate STORE (an existing SQLite join store)", file=sys.stderr)
        return 2
    n = to_json(args[0])
    print(f"{args[0]}: {n} pending rows rewritten as JSON; the store can be opened by any Python now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
