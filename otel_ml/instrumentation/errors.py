"""Exceptions of the instrumentation SDK: raised only at definition time, never while predicting."""

from __future__ import annotations


class OtelMLError(Exception):
    """Root of every exception otel-ml raises on purpose."""


class ConfigurationError(OtelMLError, ValueError):
    """An invalid argument to :class:`~otel_ml.ModelMonitor`, ``monitor.instrument`` or :func:`otel_ml.configure`.

    Raised when the monitor or decorator is defined (import time of the serving code), never from a prediction call.
    The message names the wrong argument and shows a valid example.
    """
