"""The one place otel-ml touches a private OpenTelemetry name; each use has a public-API fallback and a test.

otel-ml lives inside applications that pin their own OpenTelemetry version, so it uses public API only, except
where measured cost forces otherwise. Each function here tries the private fast path, checks what it got, and
falls back to the public API when the installed version differs (``tests/instrumentation/test_compat.py`` runs
both paths and checks they agree).

Uses, each with its public fallback and the reason:

* ``opentelemetry._logs`` (the Logs API: underscore-named while the logs signal is in development; no public home):
  ``mode="sdk"`` and the reuse of an app's logger-provider resource. Fallback: without it, ``mode="sdk"`` is refused
  with a clear :class:`~otel_ml.ConfigurationError` and the resource comes from the tracer provider or the
  environment.
* ``opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY`` / ``_SUPPRESS_HTTP_INSTRUMENTATION_KEY``: set on otel-ml's
  worker thread so that the app's instrumentations (gRPC, urllib3, requests...) never trace otel-ml's own exports.
  Fallback: the plain ``"suppress_instrumentation"`` key, which contrib's ``is_instrumentation_enabled`` honours.

* ``opentelemetry.context._RUNTIME_CONTEXT._current_context`` (the ``ContextVar`` of the default runtime context),
  read on every recorded prediction; fallback ``opentelemetry.context.get_current()``. The ``ContextVar``'s bound
  ``get`` is one C call; ``get_current()`` adds two Python frames (about 0.1 µs per prediction, a tenth of the
  caller's cost).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any


def context_getter() -> Callable[[], Any]:
    """A zero-argument callable returning the current OpenTelemetry ``Context`` (what ``get_current()`` returns).

    Fast path: the ``get`` of the API's default contextvars runtime context. Fallback (another runtime context
    configured with ``OTEL_PYTHON_CONTEXT``, or an API version that names it differently):
    ``opentelemetry.context.get_current``.
    """
    from opentelemetry import context

    try:
        runtime = getattr(context, "_RUNTIME_CONTEXT", None)
        var = getattr(runtime, "_current_context", None)
        if isinstance(var, ContextVar) and type(runtime).__name__ == "ContextVarsRuntimeContext":
            get: Callable[[], Any] = var.get
            if get() is context.get_current():  # the same object the public API returns
                return get
    except Exception:  # any surprise: the public API
        pass
    return context.get_current


SUPPRESS_INSTRUMENTATION_PLAIN_KEY = "suppress_instrumentation"
"""The plain context key every opentelemetry-python-contrib instrumentation still honours ("set for backward
compatibility" in ``opentelemetry.instrumentation.utils``): the public fallback of the API's private keys."""


def suppress_instrumentation_keys() -> tuple[str, ...]:
    """Context keys that tell instrumentations (gRPC, urllib, urllib3, requests, httpx...) to stay silent.

    The API defines ``_SUPPRESS_INSTRUMENTATION_KEY`` and ``_SUPPRESS_HTTP_INSTRUMENTATION_KEY`` in
    ``opentelemetry.context`` (private, read by contrib's ``is_instrumentation_enabled``); where an API version
    lacks them, the plain key alone still suppresses contrib instrumentations.
    """
    from opentelemetry import context

    keys = [SUPPRESS_INSTRUMENTATION_PLAIN_KEY]
    for name in ("_SUPPRESS_INSTRUMENTATION_KEY", "_SUPPRESS_HTTP_INSTRUMENTATION_KEY"):
        key = getattr(context, name, None)
        if isinstance(key, str):
            keys.append(key)
    return tuple(keys)


def suppress_instrumentation_in_this_thread() -> None:
    """Attach a context that suppresses instrumentation to the calling thread, for good (otel-ml's own worker
    thread: its exports must never be traced by the application's instrumentations)."""
    from opentelemetry import context

    ctx = context.get_current()
    for key in suppress_instrumentation_keys():
        ctx = context.set_value(key, True, ctx)
    context.attach(ctx)


def logs_api() -> Any:
    """The OpenTelemetry Logs API module, or ``None`` when the installed API has none.

    The API keeps it in ``opentelemetry._logs`` (underscore-named while the logs signal is in development); there is
    no other public home. Used only by ``mode="sdk"`` and to reuse the app's logger-provider resource.
    """
    try:
        import opentelemetry._logs as logs
    except ImportError:
        return None
    return logs


def event_emitter(logger: Any) -> Any:
    """``emit(event_name, attributes, time_ns, context)`` for an API ``Logger``, or ``None`` when the installed API
    cannot emit events (log records with an ``event_name``: ``Logger.emit(event_name=...)`` since API 1.38,
    ``LogRecord(event_name=...)`` since 1.35)."""
    import inspect

    try:
        emit_params = inspect.signature(logger.emit).parameters
    except (TypeError, ValueError):
        emit_params = {}  # type: ignore[assignment]
    if "event_name" in emit_params:
        def emit_keywords(event_name: str, attributes: dict[str, Any], time_ns: int, ctx: Any) -> None:
            logger.emit(event_name=event_name, attributes=attributes, timestamp=time_ns, observed_timestamp=time_ns,
                        context=ctx)

        return emit_keywords
    logs = logs_api()
    record_cls = getattr(logs, "LogRecord", None)
    try:
        record_params = inspect.signature(record_cls).parameters if record_cls is not None else {}
    except (TypeError, ValueError):
        record_params = {}
    if "event_name" not in record_params:
        return None
    with_context = "context" in record_params

    def emit_record(event_name: str, attributes: dict[str, Any], time_ns: int, ctx: Any) -> None:
        extra: dict[str, Any] = {}
        if with_context:
            extra["context"] = ctx
        elif ctx is not None and "trace_id" in record_params:  # older records carry the span's ids instead
            from opentelemetry.trace import get_current_span

            sc = get_current_span(ctx).get_span_context()
            if sc.is_valid:
                extra.update(trace_id=sc.trace_id, span_id=sc.span_id, trace_flags=sc.trace_flags)
        logger.emit(record_cls(timestamp=time_ns, observed_timestamp=time_ns, event_name=event_name,  # type: ignore[misc]
                               attributes=attributes, **extra))

    return emit_record
