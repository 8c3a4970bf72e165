"""Single values and lists capped to :mod:`~otel_ml.instrumentation.limits`, every cap counted.

:class:`ValueCaps` is the base of the :class:`~otel_ml.instrumentation.normalize.Normalizer`: it owns the
truncation counts (``ml.client.values.truncated`` by ``(model name, reason)``) and the conversions every attribute
goes through. Nothing here raises for bad input: a value that cannot be used is counted and comes back as ``None``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from otel_ml.instrumentation import limits as lim
from otel_ml.instrumentation.limits import TruncationReason as R
from otel_ml.instrumentation.spec import ModelSpec

_FLOAT_ONLY = {float}


class ValueCaps:
    """Capped conversions of single values and lists; counts every cap in :attr:`truncated`."""

    def __init__(self) -> None:
        self.truncated: defaultdict[tuple[str, str], int] = defaultdict(int)
        """Values capped, by ``(model name, reason)``; merged into the client metrics by the worker."""

    def string(self, spec: ModelSpec, value: Any) -> str | None:
        """``str(value)`` cut to ``MAX_STRING_LENGTH``; ``None`` when ``str()`` raises."""
        if type(value) is not str:
            try:
                value = str(value)
            except Exception:
                self.truncated[(spec.name, R.UNSERIALIZABLE)] += 1
                return None
        if len(value) > lim.MAX_STRING_LENGTH:
            self.truncated[(spec.name, R.TOO_LONG)] += 1
            value = value[: lim.MAX_STRING_LENGTH]
        return value

    def class_name(self, spec: ModelSpec, value: Any) -> str | None:
        """A predicted class or label as a string: an integer is an index into ``classes`` when the monitor's
        class names are not integers (``proba.argmax(1)`` with ``classes=["cat", "dog"]``); an index outside them is
        counted (``unknown_class_index``) and gives ``None``, never a made-up class ``"7"``."""
        if isinstance(value, np.generic):
            value = value.item()
        names = spec.index_classes
        if names is not None and type(value) is int:
            if 0 <= value < len(names):
                return names[value]
            self.truncated[(spec.name, R.UNKNOWN_CLASS_INDEX)] += 1
            return None
        return value if type(value) is str and len(value) <= lim.MAX_STRING_LENGTH else self.string(spec, value)

    def double(self, spec: ModelSpec, value: Any) -> float | None:
        """A finite float, or ``None`` (not a number, NaN or infinite)."""
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            self.truncated[(spec.name, R.WRONG_TYPE)] += 1
            return None
        if not math.isfinite(f):
            self.truncated[(spec.name, R.NOT_FINITE)] += 1
            return None
        return f

    def feature_value(self, spec: ModelSpec, value: Any) -> Any:
        """A feature value as an attribute value (float, int64, str or bool), or ``None`` to leave it out."""
        t = type(value)
        if t is float:
            if value - value == 0.0:
                return value
            self.truncated[(spec.name, R.NOT_FINITE)] += 1
            return None
        if t is int:
            return value if -(2**63) <= value < 2**63 else float(value)
        if t is str or t is bool:
            return value if t is bool or len(value) <= lim.MAX_STRING_LENGTH else self.string(spec, value)
        if value is None:
            return None
        if isinstance(value, np.generic):
            return self.feature_value(spec, value.item())
        if isinstance(value, (int, float)):  # int / float subclasses (IntEnum...)
            return self.feature_value(spec, float(value) if isinstance(value, float) else int(value))
        self.truncated[(spec.name, R.WRONG_TYPE)] += 1
        return self.string(spec, value)

    def items(self, spec: ModelSpec, values: Any) -> list[Any]:
        """``values`` as a list of at most ``MAX_ARRAY_LENGTH`` items (raises if it is not iterable)."""
        if isinstance(values, np.ndarray):
            values = values.ravel().tolist()
        elif not isinstance(values, list):
            values = list(values)
        if len(values) > lim.MAX_ARRAY_LENGTH:
            self.truncated[(spec.name, R.TOO_MANY_ITEMS)] += 1
            values = values[: lim.MAX_ARRAY_LENGTH]
        return values

    def strings(self, spec: ModelSpec, values: Any) -> list[str] | None:
        """A list of capped strings, or ``None`` when ``values`` is not iterable."""
        try:
            items = self.items(spec, values)
        except Exception:
            self.truncated[(spec.name, R.WRONG_TYPE)] += 1
            return None
        return [s for s in (self.string(spec, v) for v in items) if s is not None]

    def doubles(self, spec: ModelSpec, values: Any, *, allow_nan: bool = False) -> tuple[float, ...] | None:
        """Finite doubles as a tuple (the encoders' marker for a validated double array), or ``None``.

        With ``allow_nan``, NaN entries are kept (a multilabel model's "label not scored"); infinities still drop
        the array.
        """
        try:
            if type(values) is np.ndarray:
                values = values.ravel().tolist()
            elif type(values) is not list:
                values = list(values)
            if len(values) > lim.MAX_ARRAY_LENGTH:
                self.truncated[(spec.name, R.TOO_MANY_ITEMS)] += 1
                values = values[: lim.MAX_ARRAY_LENGTH]
            if set(map(type, values)) != _FLOAT_ONLY:
                values = [float(v) for v in values]
        except Exception:
            self.truncated[(spec.name, R.WRONG_TYPE)] += 1
            return None
        total = sum(values)
        if total - total != 0.0 and not all(map(math.isfinite, values)):  # a finite sum means all are finite
            if not allow_nan or any(map(math.isinf, values)):
                self.truncated[(spec.name, R.NOT_FINITE)] += 1
                return None
        return tuple(values)
