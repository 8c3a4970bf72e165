"""The id of the prediction just made, for serving code to hand to its caller (for later feedback/labels).

``monitor.instrument`` and ``monitor.log_prediction(s)`` set a :class:`contextvars.ContextVar` in the caller's
context, so it is visible right after the call in the same thread or asyncio task, and never leaks between requests
served by different tasks or threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

_CURRENT: ContextVar[str | Sequence[str] | None] = ContextVar("otel_ml_prediction_id", default=None)


def current_prediction_id() -> str | None:
    """Id of the last single prediction recorded in this context (``None`` if none, or if it was a batch).

    Example:
        >>> import otel_ml
        >>> monitor = otel_ml.ModelMonitor("fraud", version="1", task="binary", classes=["legit", "fraud"])
        >>> pid = monitor.log_prediction("fraud", scores=0.93)
        >>> otel_ml.current_prediction_id() == pid
        True
    """
    value = _CURRENT.get()
    return value if isinstance(value, str) else None


def current_prediction_ids() -> Sequence[str] | None:
    """Ids of the last prediction(s) recorded in this context: one-element list for a single prediction."""
    value = _CURRENT.get()
    if value is None:
        return None
    return [value] if isinstance(value, str) else value


set_current = _CURRENT.set
"""Set the current prediction id(s) (internal)."""
