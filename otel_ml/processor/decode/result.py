"""The result of decoding a request (:class:`Decoded`) and how rejections are reported.

:class:`Reject` (one invalid record, with a RejectReason) and the bounded messages: :func:`shown` (a short
prefix of any input value), :func:`limit_message` (a record beyond a limit, codes shared with
``_fastdecode.c``), :func:`error_message` (the OTLP ``partial_success.error_message``, at most
:data:`MAX_ERROR_MESSAGE` bytes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from otel_ml.errors import OtelMLError
from otel_ml.processor.records import Row
from otel_ml.semconv.attributes import ML_SEGMENT_PREFIX as _SEGMENT
from otel_ml.semconv.attributes import RejectReason

SHOWN_BYTES: Final = 64
"""At most this many bytes of an input (a key or a value) appear in a rejection message."""
MAX_MESSAGE: Final = 256
"""Longest message of one rejection."""
MAX_ERROR_MESSAGE: Final = 1024
"""Longest ``partial_success.error_message`` (:func:`error_message`)."""


class Reject(OtelMLError):
    """A record is invalid; ``reason`` is a RejectReason value."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


Extra = tuple[dict[str, Any], list[float] | None, tuple[str, ...] | None]
"""Per-prediction data that is not stored: ``(features, scores, classes)``."""


@dataclass(slots=True)
class Decoded:
    """Result of decoding one request.

    Attributes:
        received: Log records in the request.
        ignored: Records that are not otel-ml events.
        rejected: Rejected records by reason.
        first_error: Message of the first rejection (the OTLP ``partial_success.error_message``).
        predictions: Prediction rows (pairs have their label half set).
        extras: Aligned with ``predictions``: features, scores and classes (for stages).
        labels: Label rows.
        dropped: Features dropped from accepted predictions, by :class:`FeatureDropReason`.
        parts: For a large request (:data:`PART_BYTES`): the request decoded in parts of at most
            :data:`PART_RECORDS` records, produced on demand (then the row lists above are empty and ``received``,
            ``ignored`` count the whole request); each part is a :class:`Decoded` without parts. The processor
            ingests them one after the other in one transaction, so only one part's rows exist at a time.
    """

    received: int = 0
    ignored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    first_error: str = ""
    predictions: list[Row] = field(default_factory=list)
    extras: list[Extra | None] = field(default_factory=list)
    labels: list[Row] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    parts: Callable[[], Iterator[Decoded]] | None = None

    def materialized(self) -> Decoded:
        """This request with its parts concatenated (tests, tools: the memory bound is lost)."""
        if self.parts is None:
            return self
        out = Decoded(received=self.received, ignored=self.ignored)
        for part in self.parts():
            for reason, n in part.rejected.items():
                out.rejected[reason] += n
            out.first_error = out.first_error or part.first_error
            out.predictions += part.predictions
            out.extras += part.extras
            out.labels += part.labels
            out.dropped.update(part.dropped)
        return out

    @property
    def rejected_count(self) -> int:
        """Total rejected records."""
        return sum(self.rejected.values())

    def reject(self, reason: str, message: str) -> None:
        """Count one rejection (the message of the first one is kept, bounded to :data:`MAX_MESSAGE`)."""
        self.rejected[reason] += 1
        if not self.first_error:
            self.first_error = _clip(f"{reason}: {message}", MAX_MESSAGE)

    def reject_limit(self, code: int, key_prefix: bytes, key_bytes: int, n: int, limit: int) -> None:
        """Count a record beyond a limit (called by the C decoder too; ``code`` as in :func:`limit_message`)."""
        self.reject(RejectReason.TOO_MANY if code in _TOO_MANY_CODES else RejectReason.TOO_LONG,
                    limit_message(code, shown_bytes(key_prefix, key_bytes), n, limit))


def _clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8 (on a character boundary), ``…`` marking a cut."""
    if len(text) <= limit // 4 or len(raw := text.encode()) <= limit:
        return text
    return raw[:limit - 3].decode("utf-8", "ignore") + "…"


def utf8_len(s: str) -> int:
    """Bytes of ``s`` in UTF-8 (O(1) for ASCII strings)."""
    return len(s) if s.isascii() else len(s.encode())


def _over(s: str, limit: int) -> bool:
    """Whether ``s`` is longer than ``limit`` bytes of UTF-8 (no encoding when the character count decides)."""
    n = len(s)
    return n > limit or (n > limit >> 2 and not s.isascii() and len(s.encode()) > limit)


def shown_bytes(prefix: bytes, total: int) -> str:
    """How a key or value appears in a message: its first :data:`SHOWN_BYTES` bytes, elided beyond."""
    if total <= SHOWN_BYTES:
        return prefix.decode("utf-8", "replace")
    return f"{prefix[:SHOWN_BYTES].decode('utf-8', 'ignore')}…({total} bytes)"


def shown(s: str) -> str:
    """:func:`shown_bytes` of a string (same result as the C decoder's, which passes the raw prefix)."""
    return shown_bytes(s[:SHOWN_BYTES].encode()[:SHOWN_BYTES], utf8_len(s))


LIMIT_VALUE, LIMIT_ITEMS, LIMIT_SEGMENTS, LIMIT_DIMENSION, LIMIT_ITEM = range(5)
"""Codes of :func:`limit_message` (also used by ``_fastdecode.c``; only LIMIT_ITEMS and LIMIT_SEGMENTS are
``too_many``, the others ``too_long``: see :meth:`Decoded.reject_limit`)."""
_TOO_MANY_CODES: Final = frozenset({LIMIT_ITEMS, LIMIT_SEGMENTS})


def limit_message(code: int, key: str, n: int, limit: int) -> str:
    """The rejection message of a record beyond a limit (``key`` already :func:`shown`)."""
    if code == LIMIT_VALUE:
        return f"{key} is {n} bytes (limit {limit})"
    if code == LIMIT_ITEMS:
        return f"{key} has {n} items (limit {limit})"
    if code == LIMIT_SEGMENTS:
        return f"more than {limit} {_SEGMENT}* attributes"
    if code == LIMIT_DIMENSION:
        return f"{key}: segment dimension of {n} bytes (limit {limit})"
    return f"{key} has an item of {n} bytes (limit {limit})"


def error_message(rejected: Counter[str], first_error: str) -> str:
    """``partial_success.error_message``: the first rejection, then the counts by reason; at most 1 KiB.

    Example: ``too_long: ml.prediction.id is 5000 bytes (limit 4096) [3 rejected: too_long 2, wrong_type 1]``.
    """
    if not rejected:
        return ""
    counts = ", ".join(f"{reason} {n}" for reason, n in sorted(rejected.items()))
    tail = _clip(f" [{sum(rejected.values())} rejected: {counts}]", MAX_ERROR_MESSAGE // 2)
    return _clip(first_error, MAX_ERROR_MESSAGE - len(tail.encode())) + tail
