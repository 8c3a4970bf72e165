"""Prediction ids: unique across processes, cheap on the caller (no ``uuid4`` per call).

An id is ``<prefix><counter in hex>`` where the prefix is 16 random hex digits drawn once per process (and again in
a forked child) followed by ``-``. ``next()`` on an :func:`itertools.count` is atomic under the GIL, so ids are
unique across threads without a lock. Batches take one counter value and append ``.<row>``, so a batch of any size
costs one counter step; :class:`PredictionIds` renders the row ids on demand.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import overload

from otel_ml.instrumentation import fork


class IdGenerator:
    """Generates prediction ids; re-seeded in a forked child so parent and child never collide."""

    __slots__ = ("__weakref__", "_counter", "new_id", "prefix")

    def __init__(self) -> None:
        self.prefix = ""
        self._counter: Iterator[int] = itertools.count(1)
        self.new_id: Callable[[], str] = str
        self.reseed()

    def reseed(self) -> None:
        """Draw a new random prefix and restart the counter (called at start and in a forked child)."""
        self.prefix = secrets.token_hex(8) + "-"
        self._counter = itertools.count(1)
        # One new id per call, without a Python frame: map(%-format, count) advanced in C (printf-style formatting
        # of an int is about 50 ns cheaper than str.format here; the same string).
        self.new_id = map((self.prefix + "%x").__mod__, self._counter).__next__

    def after_fork_in_child(self) -> None:
        """New prefix in a forked child (see :mod:`~otel_ml.instrumentation.fork`)."""
        self.reseed()

    def new_batch(self, n: int) -> PredictionIds:
        """``n`` new prediction ids, rendered on demand."""
        return PredictionIds(f"{self.prefix}{next(self._counter):x}.", n)


class PredictionIds(Sequence[str]):
    """The ids of one batch of predictions: a read-only sequence of strings, rendered when accessed.

    Equal to a list or tuple holding the same strings.
    """

    __slots__ = ("_base", "_n")

    def __init__(self, base: str, n: int) -> None:
        self._base = base
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [f"{self._base}{i:x}" for i in range(*index.indices(self._n))]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError("prediction id index out of range")
        return f"{self._base}{index:x}"

    def __iter__(self) -> Iterator[str]:
        base = self._base
        return (f"{base}{i:x}" for i in range(self._n))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PredictionIds):
            return self._base == other._base and self._n == other._n
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._base, self._n))

    def __repr__(self) -> str:
        shown = ", ".join(repr(x) for x in self[:3])
        return f"PredictionIds([{shown}{', ...' if self._n > 3 else ''}], n={self._n})"


IDS = IdGenerator()
"""The process-wide id generator."""

fork.register(IDS)
