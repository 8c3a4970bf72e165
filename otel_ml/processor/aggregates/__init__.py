"""Cumulative metric aggregates: the committed in-memory mirror, per-step deltas, cardinality caps.

Every additive metric the processor exports (counters, up-down counters and the bucket counts of its histograms) is
a float keyed by ``(metric name, attributes)``. One processing step collects *deltas* in a :class:`Step`; the store
persists the new totals in the same transaction as the records and joins, and only after the commit are the deltas
added to the :class:`Aggregates` mirror the exporters read. A failed step is discarded as a whole.

Histograms are kept as cumulative bucket counts (``<name>|b<i>``, ``<name>|sum``, ``<name>|count`` pseudo-metrics),
so they are durable like the counters (the OTel SDK histogram costs ~16 µs per ``record``; bucketing a batch with
numpy costs well under 1 µs per value).

Cardinality (:class:`Capper`), per model and capped attribute key (and for model names themselves):

* values of a loaded reference artifact are *pinned*: always admitted, outside the cap (:meth:`Capper.pin`);
* other values take one of ``metrics.cardinality_limit`` slots; once half the slots are taken, a new value needs
  ``metrics.cardinality_admission`` sightings (separate steps) first, so one-off junk cannot fill the cap;
* when the cap is full, the least recently seen value gives up its slot if it was not seen for
  ``metrics.cardinality_idle``: its series are removed from the mirror and the store (:meth:`Capper.take_retired`);
* last-seen times are persisted (store state), so a restart neither forgets nor resurrects them;
* beyond ``metrics.series_limit`` points per metric, new attribute combinations are folded into the point whose
  capped attributes are all ``_other``.

Every value mapped to ``_other`` is counted in ``ml.processor.attribute.overflow{ml.reason}``.

Modules (this package re-exports their public names; import from ``otel_ml.processor.aggregates``):

- :mod:`~otel_ml.processor.aggregates.keys`: :data:`Attrs`, :data:`Key`, their text form, :data:`CAPPED_KEYS`.
- :mod:`~otel_ml.processor.aggregates.capper`: :class:`Capper` (cardinality caps).
- :mod:`~otel_ml.processor.aggregates.deltas`: :class:`Step` (the deltas of one step).
- :mod:`~otel_ml.processor.aggregates.mirror`: :class:`Aggregates` (the committed mirror).
"""

from otel_ml.processor.aggregates.capper import (
    DEFAULT_ADMISSION,
    DEFAULT_IDLE_S,
    DEFAULT_SERIES_LIMIT,
    SAVE_INTERVAL_S,
    STATE_KEY,
    Capper,
)
from otel_ml.processor.aggregates.deltas import Step
from otel_ml.processor.aggregates.keys import CAPPED_KEYS, Attrs, Key, decode_attrs, encode_attrs
from otel_ml.processor.aggregates.mirror import Aggregates

__all__ = [
    "CAPPED_KEYS",
    "DEFAULT_ADMISSION",
    "DEFAULT_IDLE_S",
    "DEFAULT_SERIES_LIMIT",
    "SAVE_INTERVAL_S",
    "STATE_KEY",
    "Aggregates",
    "Attrs",
    "Capper",
    "Key",
    "Step",
    "decode_attrs",
    "encode_attrs",
]
