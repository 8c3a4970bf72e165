"""Cheap access to the active span (the link of an event to its inference span).

``opentelemetry.trace.get_current_span()`` costs about 0.7 µs; reading the API's context variable directly costs
about 0.15 µs. The span object is kept by reference and its context checked for validity on the worker.
Falls back to the public API if the runtime context is not the default contextvars one.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any


def _make_getter() -> Callable[[], Any]:
    from opentelemetry import context as otel_context
    from opentelemetry import trace

    try:
        from opentelemetry.trace.propagation import _SPAN_KEY

        var = getattr(otel_context._RUNTIME_CONTEXT, "_current_context", None)
        if isinstance(var, ContextVar):
            get = var.get

            def fast() -> Any:
                return get().get(_SPAN_KEY)

            return fast
    except (ImportError, AttributeError):  # a different API version or runtime context
        pass

    def slow() -> Any:
        return trace.get_current_span()

    return slow


current_span: Callable[[], Any] = _make_getter()
"""The span in the current context (or ``None``); validity is checked on the worker."""
