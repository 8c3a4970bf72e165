"""Per-model cardinality caps (:class:`Capper`): admission, pinned reference values, idle values giving up
their slot, and the persisted last-seen times (see :mod:`otel_ml.processor.aggregates`).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from otel_ml.processor.aggregates.keys import _MODEL_SCOPE, _MODELS, CAPPED_KEYS, Attrs, Key
from otel_ml.processor.caches import ByteCache, approx_size
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import OverflowReason

_logger = logging.getLogger(__name__)

DEFAULT_IDLE_S: Final = 86400.0
DEFAULT_ADMISSION: Final = 20
DEFAULT_SERIES_LIMIT: Final = 10_000
STATE_KEY: Final = "cardinality"
"""Store state blob of the last-seen times (JSON)."""
SAVE_INTERVAL_S: Final = 60.0
"""How often changed last-seen times are written to the store."""
_CANDIDATES_PER_SLOT: Final = 4
"""Values waiting for admission, per slot of a cap (least recently seen leave first)."""


class Capper:
    """Per-model cardinality caps (see the module docstring); owned by the writer thread (not thread-safe).

    Args:
        limit: Slots per model and capped key, and for model names (``metrics.cardinality_limit``).
        idle: Seconds after which an unseen value may lose its slot to a new one (``metrics.cardinality_idle``).
        admission: Sightings a new value needs once half the slots are taken (``metrics.cardinality_admission``).
        series_limit: Points per metric (``metrics.series_limit``).
        clock: Seconds since the epoch.
    """

    def __init__(self, limit: int, idle: float = DEFAULT_IDLE_S, admission: int = DEFAULT_ADMISSION,
                 series_limit: int = DEFAULT_SERIES_LIMIT, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.idle = idle
        self.admission = admission
        self.series_limit = series_limit
        self.clock = clock
        self._slots: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        """(model, key) -> value -> last seen; dict order is least recently seen first."""
        self._pinned: dict[tuple[str, str], frozenset[str]] = {}
        self._candidates: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
        self._retired: list[tuple[str, str, str]] = []
        self._changed = False
        self._last_save = 0.0
        self._refresh = min(60.0, idle / 4)
        self._last_refresh = clock()
        self.attr_cache: ByteCache[Attrs, Attrs] = ByteCache("aggregates.attrs", 16 << 20)
        """:meth:`Step.attrs` results that capped nothing, by their input (emptied every ``min(60 s, idle/4)``
        so that the last-seen times of values in use stay fresh)."""

    # --- admission --------------------------------------------------------------------------------------------------
    def admit(self, model: str, key: str, value: str, now: float) -> str | None:
        """``None`` when ``value`` may be used (registering it when there is room), else the overflow reason."""
        if value == a.OVERFLOW_VALUE:
            return None
        cap = (model, key)
        pinned = self._pinned.get(cap)
        if pinned is not None and value in pinned:
            return None
        slots = self._slots[cap]
        if value in slots:
            del slots[value]  # re-inserted last: the dict stays ordered by last sighting
            slots[value] = now
            return None
        if len(slots) >= self.limit:
            oldest = next(iter(slots))
            if now - slots[oldest] < self.idle:
                return OverflowReason.LIMIT
            self._retire(model, key, oldest)
        if len(slots) >= self.limit // 2 and self.admission > 1:
            candidates = self._candidates[cap]
            seen = candidates.pop(value, 0) + 1
            if seen < self.admission:
                candidates[value] = seen
                while len(candidates) > _CANDIDATES_PER_SLOT * self.limit:
                    del candidates[next(iter(candidates))]
                return OverflowReason.ADMISSION
        slots[value] = now
        self._changed = True
        return None

    def _retire(self, model: str, key: str, value: str) -> None:
        del self._slots[(model, key)][value]
        self._retired.append((model, key, value))
        self._changed = True
        if model == _MODEL_SCOPE and key == a.ML_MODEL_NAME:  # a model leaves: every cap of it goes too
            for cap in [c for c in self._slots if c[0] == value]:
                del self._slots[cap]
            for cap in [c for c in self._candidates if c[0] == value]:
                del self._candidates[cap]
        _logger.info("cardinality: %s=%r of model %r unseen for %.0f s gave up its slot", key, value[:64], model[:64],
                     self.idle)

    def requeue_retired(self, retired: list[tuple[str, str, str]]) -> None:
        """Give back what :meth:`take_retired` returned when the step that was to delete the series failed."""
        self._retired[:0] = retired

    def take_retired(self) -> list[tuple[str, str, str]]:
        """``(model, key, value)`` of the values that lost their slot since the last call (their series go)."""
        retired, self._retired = self._retired, []
        if retired:
            self.attr_cache.shed()
        return retired

    def begin_step(self, now: float) -> None:
        """Refresh the attribute cache periodically (cache hits do not update last-seen times)."""
        if now - self._last_refresh >= self._refresh:
            self._last_refresh = now
            self.attr_cache.shed()

    # --- reference values ---------------------------------------------------------------------------------------------
    def pin(self, model: str, values: Mapping[str, Iterable[str]]) -> None:
        """Values of ``model`` a reference artifact knows, by key: always admitted, outside the caps; the model
        itself is pinned too. Replaces what was pinned for ``model``; an empty mapping unpins it."""
        if not model:
            return
        for cap in [c for c in self._pinned if c[0] == model]:
            del self._pinned[cap]
        models = set(self._pinned.get(_MODELS, frozenset()))
        models.discard(model)
        if values:
            models.add(model)
            self._slots[_MODELS].pop(model, None)
            for key, vals in values.items():
                if key in CAPPED_KEYS:
                    pinned = self._pinned[(model, key)] = frozenset(map(str, vals))
                    slots = self._slots[(model, key)]
                    for v in pinned.intersection(slots):
                        del slots[v]
        self._pinned[_MODELS] = frozenset(models)
        self.attr_cache.shed()

    def pinned(self, model: str, key: str) -> frozenset[str]:
        """Pinned values of a cap (``("", "ml.model.name")`` for the pinned models)."""
        return self._pinned.get((model, key), frozenset())

    # --- persistence --------------------------------------------------------------------------------------------------
    def restore(self, keys: Iterable[Key], state: bytes | None = None) -> None:
        """Register the values of persisted aggregates so caps stay stable across restarts (and resyncs).

        Last-seen times come from ``state`` (:meth:`state`); a value without one (a store written before they were
        persisted) counts as seen now. Values already held keep theirs. A cap over its limit (a lower limit than
        before) keeps its most recently seen values.
        """
        seen: dict[tuple[str, str], dict[str, float]] = {}
        if state:
            try:
                for model, key, values in json.loads(state)["caps"]:
                    seen[(str(model), str(key))] = {str(v): float(t) for v, t in values}
            except (ValueError, KeyError, TypeError):
                _logger.warning("ignoring unreadable cardinality state (last-seen times restart now)")
        now = self.clock()
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for _, attrs in keys:
            d = dict(attrs)
            model = d.get(a.ML_MODEL_NAME, _MODEL_SCOPE)
            if a.ML_MODEL_NAME in d and model != a.OVERFLOW_VALUE:
                found[_MODELS].add(model)
            for k, v in attrs:
                if k in CAPPED_KEYS and v != a.OVERFLOW_VALUE:
                    found[(model, k)].add(v)
        for cap, values in found.items():
            times = seen.get(cap, {})
            held = self._slots[cap]
            merged = {**{v: times.get(v, now) for v in values}, **held}
            ordered = sorted(merged, key=merged.__getitem__)[-self.limit:]
            self._slots[cap] = {v: merged[v] for v in ordered}

    def state(self) -> bytes:
        """The last-seen times (JSON), for :meth:`restore`."""
        caps = [[model, key, [[v, round(t, 1)] for v, t in slots.items()]]
                for (model, key), slots in self._slots.items() if slots]
        return json.dumps({"version": 1, "caps": caps}, separators=(",", ":")).encode()

    def save_due(self, now: float) -> bytes | None:
        """The state to persist when it changed and :data:`SAVE_INTERVAL_S` passed since the last save."""
        if now - self._last_save < SAVE_INTERVAL_S or not (self._changed or now - self._last_save >= 3600.0):
            return None
        self._last_save = now
        self._changed = False
        return self.state()

    def slots(self, model: str, key: str) -> dict[str, float]:
        """Admitted values of a cap and their last-seen times (tests, diagnostics)."""
        return dict(self._slots.get((model, key), {}))

    def approx_bytes(self) -> int:
        """Approximate bytes held by the caps (values, times, candidates)."""
        return sum(approx_size(v) + 48 for slots in self._slots.values() for v in slots) + \
            sum(approx_size(v) + 48 for cands in self._candidates.values() for v in cands)
