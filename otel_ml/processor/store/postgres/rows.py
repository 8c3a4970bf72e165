"""Row payloads: a pending row's halves encoded with marshal (the SQLite store's pinned :data:`MARSHAL_VERSION`)
and decoded back, and the quarantine of a stored row that does not decode.
"""

from __future__ import annotations

import logging
import marshal
from typing import Final

from otel_ml.processor.records import COLUMNS, LABEL_START, SEP, TASK, Row
from otel_ml.processor.store.base import Quarantined
from otel_ml.processor.store.postgres.connection import PostgresConnection
from otel_ml.processor.store.sqlite import MARSHAL_VERSION

_logger = logging.getLogger(__name__)

_NO_LABEL: Final = (None,) * (len(COLUMNS) - LABEL_START)  # the label columns of a pending prediction
_LABEL_PAD: Final = (None,) * (LABEL_START - 3)  # VERSION .. P_TS of a pending label (MODEL comes from the key)


class PostgresRows(PostgresConnection):
    """Row encoding and quarantine of :class:`~otel_ml.processor.store.postgres.PostgresJoinStore`."""

    @staticmethod
    def _halves(row: Row) -> tuple[bytes | None, bytes | None]:
        """Payloads of a pending row: a prediction's columns after the key and arrival, or a label's half."""
        if row[TASK] is not None:
            return marshal.dumps(row[2:LABEL_START], MARSHAL_VERSION), None
        return None, marshal.dumps(row[LABEL_START:], MARSHAL_VERSION)

    @staticmethod
    def _row(k: str, arrived: float, pred: bytes | None, label: bytes | None) -> Row:
        """The pending row of a stored payload.

        Raises:
            ValueError: The payload cannot be decoded into a row (a corrupted row: the caller quarantines it).
        """
        try:
            half = marshal.loads(pred if pred is not None else label)  # type: ignore[arg-type]
        except (ValueError, EOFError, TypeError) as exc:
            raise ValueError(f"undecodable payload: {exc}") from exc
        if pred is not None:
            if type(half) is not tuple or len(half) != LABEL_START - 2:
                raise ValueError(f"not a prediction half: {type(half).__name__}")
            return (k, arrived, *half, *_NO_LABEL)
        if type(half) is not tuple or len(half) != len(_NO_LABEL) or SEP not in k:
            raise ValueError(f"not a label half: {type(half).__name__}")
        return (k, arrived, k.split(SEP, 1)[0], *_LABEL_PAD, *half)

    def _quarantine(self, bad: list[tuple[str, bytes | None, bytes | None, str]]) -> None:
        """Move undecodable rows ``(key, pred, label, reason)`` from ``joins`` to ``quarantine`` (this transaction)."""
        s = self._s
        db = self._db()
        db.execute(f"DELETE FROM {s}.joins WHERE k = ANY(%b::text[])", ([b[0] for b in bad],))
        db.execute(f"INSERT INTO {s}.quarantine (k, pred, label, reason, instance) SELECT *, %b FROM "
                   "unnest(%b::text[], %b::bytea[], %b::bytea[], %b::text[])",
                   (self.instance_id, [b[0] for b in bad], [b[1] for b in bad], [b[2] for b in bad],
                    [b[3] for b in bad]))
        for key, _, _, reason in bad:
            self._quarantined.append(Quarantined(key, reason))
            _logger.warning("join store: quarantined the undecodable row of %r (%s)", key, reason)
