"""The ROC-AUC windows: the most recent scored joins of each binary model version, in memory and in the store.

ROC-AUC does not decompose into counters, so the processor keeps a bounded window of ``(score, is_positive)`` per
``(model, version)`` (``metrics.auc_window`` pairs) and exports ``ml.classification.roc_auc`` as a gauge. The
:class:`~otel_ml.processor.step.Processor` extends the windows only after a step committed, writes the changed ones
into its tick's transaction every :data:`AUC_SAVE_INTERVAL_S` and at shutdown (store state key
``auc<SEP>model<SEP>version``), and restores them at construction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final

import numpy as np

from otel_ml.processor.aggregates import Step
from otel_ml.processor.records import SEP
from otel_ml.quality import roc_auc_score
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m

_logger = logging.getLogger(__name__)

AucKey = tuple[str, str]
"""``(model, version)``."""
AucUpdate = tuple[AucKey, np.ndarray, np.ndarray]
"""Scores (float64) and whether each label is the positive class (bool) of one group of joins."""

_AUC_STATE: Final = "auc"
_AUC_MAGIC: Final = b"AUC1"
_INITIAL: Final = 64
"""Initial capacity of a window's buffer (it doubles up to ``metrics.auc_window``)."""
AUC_SAVE_INTERVAL_S: Final = 10.0
"""How often changed ROC-AUC windows are written to the store (and at shutdown): after ``kill -9`` the restored
window misses at most the last interval's joins."""


class AucWindow:
    """Ring buffer of the most recent (score, is_positive) pairs of one model version (ROC-AUC window).

    The buffer grows with the pairs it holds (from :data:`_INITIAL` up to ``size``): a window costs what it holds,
    so many sparse model versions cannot take ``size`` pairs of memory each.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.scores = np.empty(min(size, _INITIAL), dtype=np.float64)
        self.ys = np.empty(self.scores.size, dtype=bool)
        self.pos = 0
        self.filled = 0

    def extend(self, scores: np.ndarray, ys: np.ndarray) -> None:
        """Append pairs, overwriting the oldest when full."""
        size = self.size
        if scores.size >= size:
            scores, ys = scores[-size:], ys[-size:]
        cap = self.scores.size
        if cap < size and self.filled + scores.size > cap:  # grow: the held pairs, oldest first, then room
            order = self._order()
            cap = min(size, max(2 * cap, self.filled + scores.size))
            self.scores = np.concatenate([self.scores[order], np.empty(cap - self.filled, dtype=np.float64)])
            self.ys = np.concatenate([self.ys[order], np.empty(cap - self.filled, dtype=bool)])
            self.pos = self.filled
        idx = (self.pos + np.arange(scores.size)) % cap
        self.scores[idx] = scores
        self.ys[idx] = ys
        self.pos = int((self.pos + scores.size) % cap)
        self.filled = min(self.filled + scores.size, cap)

    def _order(self) -> np.ndarray:
        cap = self.scores.size
        return np.arange(self.filled) if self.filled < cap else (self.pos + np.arange(self.filled)) % cap

    def values(self) -> tuple[np.ndarray, np.ndarray]:
        """The scores and labels held (in buffer order)."""
        return self.scores[:self.filled], self.ys[:self.filled]

    def to_bytes(self) -> bytes:
        """Oldest first: magic, little-endian float64 scores, then one byte per label (stable across versions)."""
        order = self._order()
        return _AUC_MAGIC + self.scores[order].astype("<f8").tobytes() + self.ys[order].astype(np.uint8).tobytes()

    @staticmethod
    def arrays_from_bytes(blob: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_bytes`; raises ValueError on anything else."""
        body = blob[len(_AUC_MAGIC):]
        if not blob.startswith(_AUC_MAGIC) or len(body) % 9:
            raise ValueError("not a ROC-AUC window")
        n = len(body) // 9
        return (np.frombuffer(body[:8 * n], dtype="<f8").astype(np.float64),
                np.frombuffer(body[8 * n:], dtype=np.uint8).astype(bool))


class AucWindows:
    """The windows of every binary model version, which changed since the last gauge export and the last save.

    Not thread-safe (owned by the processor's writer thread).
    """

    def __init__(self, size: int, now: float) -> None:
        self.size = size
        self._windows: dict[AucKey, AucWindow] = {}
        self._dirty: set[AucKey] = set()
        self._unsaved: set[AucKey] = set()
        self.last_save = now

    def restore(self, state: Mapping[str, bytes]) -> None:
        """Load the windows saved in the store's state (other keys are ignored, unreadable windows skipped)."""
        for name, blob in state.items():
            parts = name.split(SEP)
            if len(parts) != 3 or parts[0] != _AUC_STATE:
                continue
            try:
                scores, ys = AucWindow.arrays_from_bytes(blob)
            except ValueError:
                _logger.warning("ignoring an unreadable ROC-AUC window %r (it refills from new traffic)", name)
                continue
            if not scores.size:  # the window of a retired model version
                continue
            window = self._windows[(parts[1], parts[2])] = AucWindow(self.size)
            window.extend(scores, ys)
            self._dirty.add((parts[1], parts[2]))

    def extend(self, updates: Iterable[AucUpdate]) -> None:
        """Add the scored joins of a committed step."""
        for key, scores, ys in updates:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = AucWindow(self.size)
            window.extend(scores, ys)
            self._dirty.add(key)
            self._unsaved.add(key)

    def retire(self, retired: Iterable[tuple[str, str, str]]) -> None:
        """Drop the windows of retired models and versions (their saved copies are emptied at the next save)."""
        models = {v for _, k, v in retired if k == a.ML_MODEL_NAME}
        versions = {(model, v) for model, k, v in retired if k == a.ML_MODEL_VERSION}
        for key in [k for k in self._windows if k[0] in models or k in versions]:
            del self._windows[key]
            self._dirty.discard(key)
            self._unsaved.add(key)

    def set_gauges(self, step: Step) -> None:
        """Export ``ml.classification.roc_auc`` of the windows that changed since the last call."""
        for key in self._dirty:
            scores, ys = self._windows[key].values()
            step.set_gauge(m.CLASSIFICATION_ROC_AUC, roc_auc_score(ys, scores),
                           {a.ML_MODEL_NAME: key[0], a.ML_MODEL_VERSION: key[1]})
        self._dirty.clear()

    def save_due(self, now: float, put_state: Callable[[str, bytes], None]) -> bool:
        """:meth:`save` when :data:`AUC_SAVE_INTERVAL_S` has passed since the last save; whether it wrote any."""
        return now - self.last_save >= AUC_SAVE_INTERVAL_S and self.save(put_state)

    def save(self, put_state: Callable[[str, bytes], None]) -> bool:
        """Write the changed windows into the current transaction; whether there were any."""
        for key in self._unsaved:
            window = self._windows.get(key)
            put_state(_state_key(key), window.to_bytes() if window is not None else _AUC_MAGIC)
        return bool(self._unsaved)

    def saved(self, now: float | None = None) -> None:
        """The transaction holding the last :meth:`save` committed (``now``: restart the save interval)."""
        if now is not None:
            self.last_save = now
        self._unsaved.clear()


def _state_key(key: AucKey) -> str:
    return SEP.join((_AUC_STATE, *key))
