"""The exceptions otel-ml raises on purpose: one root, a few kinds.

Every exception class in the package derives from :class:`OtelMLError` (``tests/test_errors.py`` walks the modules
and checks it), so ``except otel_ml.OtelMLError`` catches everything otel-ml raises deliberately and nothing else.
The kinds keep the builtin base their callers already catch (``ValueError``, ``RuntimeError``)::

    OtelMLError
     +-- ConfigurationError (ValueError)   invalid configuration: SDK arguments, processor YAML, stage factories,
     |                                     alert thresholds; the message names the key and shows a valid example
     +-- DataError (ValueError)            data that cannot be used: evaluation sets, reference artifacts,
     |                                     estimator inputs
     +-- StoreError (RuntimeError)         the join store cannot be read or a step could not be committed
     +-- (processor.decode.Reject)         one invalid record, rejected with a reason and counted

Wrapping always chains the cause (``raise ConfigurationError(...) from exc``). This module imports nothing from
``otel_ml``: every layer may import it.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "DataError", "OtelMLError", "StoreError"]


class OtelMLError(Exception):
    """Root of every exception otel-ml raises on purpose."""


class ConfigurationError(OtelMLError, ValueError):
    """Invalid configuration, found when it is loaded or defined, never while serving predictions.

    Raised for arguments to :class:`~otel_ml.ModelMonitor`, ``monitor.instrument`` and :func:`otel_ml.configure`
    (at definition time of the serving code), for the processor's YAML config and its stage factories (at startup),
    and for alert thresholds (when rules are generated). The message names the wrong key or argument and shows a
    valid example.
    """


class DataError(OtelMLError, ValueError):
    """Data handed to otel-ml cannot be used: an evaluation set, a reference artifact or an estimator's input."""


class StoreError(OtelMLError, RuntimeError):
    """The processor's join store cannot be read safely, or a step could not be committed to it."""
