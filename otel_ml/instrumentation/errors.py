"""Exceptions of the instrumentation SDK: raised only at definition time, never while predicting.

Both live in :mod:`otel_ml.errors` (the package's one exception root); they are re-exported here for the SDK's
modules. :class:`ConfigurationError` is an invalid argument to :class:`~otel_ml.ModelMonitor`, ``monitor.instrument``
or :func:`otel_ml.configure`, raised when the monitor or decorator is defined (import time of the serving code), never
from a prediction call.
"""

from __future__ import annotations

from otel_ml.errors import ConfigurationError, OtelMLError

__all__ = ["ConfigurationError", "OtelMLError"]
