"""Samples to relabel: a bounded, rotating JSONL file of predictions worth a human label.

Each line is one JSON object (schema version :data:`SCHEMA_VERSION`)::

    {"schema": 1,
     "time": "2026-01-01T12:00:00+00:00",  # prediction time, UTC
     "model": "router", "version": "v3", "prediction_id": "abc-123",
     "reason": "low_confidence" | "unseen_class" | "drift",
     "detail": "class 'Mystery' not in the evaluation set",   # why, for people
     "estimated_correctness": 0.31,        # classification; null when not estimated
     "expected_abs_error": null,           # regression
     "prediction": "Mystery",              # value, or list for multilabel
     "segment": "region=eu",               # "" without segment
     "features": {"age": 41, "country": "de"}}

Bounded: after ``max_samples`` lines the file is renamed to ``<path>.1`` (replacing an older one) and a new file
starts, so at most ``2 * max_samples`` samples are on disk. Label them, append them to the evaluation set, refit the
reference. Written with plain appends and flushed per batch; a failure to write is logged and never raised into
the processor.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
LOW_CONFIDENCE = "low_confidence"
UNSEEN_CLASS = "unseen_class"
DRIFT = "drift"
REASONS = (LOW_CONFIDENCE, UNSEEN_CLASS, DRIFT)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _open_append(path: Path) -> Any:
    """The file opened for appending, created owner-only (0600) like the store's files: samples carry feature
    values."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="utf-8")


class RelabelSink:
    """Appends samples to a rotating JSONL file (see the module docstring for the schema)."""

    def __init__(self, path: str | os.PathLike[str], max_samples: int) -> None:
        self.path = Path(path)
        self.max_samples = max(1, int(max_samples))
        self._lines = self._count_existing()

    def _count_existing(self) -> int:
        try:
            with self.path.open("rb") as fh:
                return sum(1 for _ in fh)
        except FileNotFoundError:
            return 0
        except OSError:
            _logger.warning("cannot read relabel file %s; starting a new count", self.path, exc_info=True)
            return 0

    def write(self, samples: Sequence[Mapping[str, Any]]) -> int:
        """Appends ``samples`` (dicts with the schema's keys, ``schema`` and ``time`` filled in); returns how many
        were written (0 on an I/O error, which is logged)."""
        if not samples:
            return 0
        written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = _open_append(self.path)
            try:
                for sample in samples:
                    if self._lines >= self.max_samples:
                        fh.close()
                        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                        self._lines = 0
                        fh = _open_append(self.path)
                    line = {"schema": SCHEMA_VERSION, **{k: _jsonable(v) for k, v in sample.items()}}
                    ts = sample.get("timestamp")
                    line.pop("timestamp", None)
                    line["time"] = datetime.fromtimestamp(float(ts or 0.0), UTC).isoformat(timespec="seconds")
                    fh.write(json.dumps(line, sort_keys=True, default=str) + "\n")
                    self._lines += 1
                    written += 1
            finally:
                fh.close()
        except OSError:
            _logger.exception("cannot write relabel samples to %s", self.path)
        return written
